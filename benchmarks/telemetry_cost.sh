#!/usr/bin/env bash
# What telemetry costs per request (issue 13): sluice_bench_server (Release,
# one worker) with
#   bare                     --metrics off
#   metrics                  istio_* series recorded (the default)
#   metrics + access log     Istio's default TEXT line to a file
#   metrics + log + 1% trace spans sampled at 1%, exported as OTLP JSON to a
#                            collector stub on 127.0.0.1 (python, answers 200)
# and nginx with its access log off and on, for reference.
#
#   benchmarks/telemetry_cost.sh [--requests N] [--warmup N] [--conns C] [--keep DIR] [--rev REV]
#   benchmarks/telemetry_cost.sh --cpu [--rounds R] [--requests N] [--warmup N] [--conns C]
#                                [--rev REV]
#
# Without --cpu: instructions per request under callgrind
# (benchmarks/instructions.sh, the same fixed request sequence for every
# row; its options pass through), one Markdown table.
#
# --cpu: CPU time per request. Each row's server starts fresh, pinned to
# CPU 1 (the origin nginx, the collector and the load generator on CPU 0),
# gets --warmup requests (default 20,000), then --requests (default
# 200,000) from `h2load --h1 -t1 -c C -m1` (keep-alive, C connections,
# default 16, one request outstanding on each); the server's utime+stime,
# all threads, from /proc/PID/stat around the measured requests, divided
# by their number (every one must be a 2xx). The rows are interleaved in
# each of --rounds rounds (default 5); per row the median and min-max of
# CPU us per request and of the cost relative to bare (nginx's access log:
# to nginx without it) in the same round. Needs h2load (Debian
# nghttp2-client), nginx, taskset and, like instructions.sh, cmake and
# ninja for the build. Prints Markdown.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CPU=0
ROUNDS=5
REQUESTS=
WARMUP=
CONNS=
REV=
ARGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --cpu) CPU=1; shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --rev) REV=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PIDS=()
T=$(mktemp -d /tmp/sluice-telemetry.XXXXXX)
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT

COLLECTOR_PORT=$(free_port)
python3 - "$COLLECTOR_PORT" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
PIDS+=($!)
OTLP="--otlp-endpoint http://127.0.0.1:$COLLECTOR_PORT/v1/traces"

if [[ $CPU == 0 ]]; then
  [[ -n $REQUESTS ]] && ARGS+=(--requests "$REQUESTS")
  [[ -n $WARMUP ]] && ARGS+=(--warmup "$WARMUP")
  [[ -n $CONNS ]] && ARGS+=(--conns "$CONNS")
  [[ -n $REV ]] && ARGS+=(--rev "$REV")
  run() {  # $1 label, $2 sluice args, rest: instructions.sh options
    local label=$1 args=$2
    shift 2
    "$HERE/instructions.sh" --rows sluice --label "$label" --sluice-args "$args" --no-header \
      "${ARGS[@]}" "$@"
  }
  echo "| proxy | instructions/request | total Ir |"
  echo "|---|---:|---:|"
  run "sluice bare" "--metrics off"
  run "sluice metrics" ""
  run "sluice metrics + access log" "--access-log @T@/access.log"
  run "sluice metrics + access log + 1% tracing" \
    "--access-log @T@/access.log --trace-sampling 1 $OTLP"
  "$HERE/instructions.sh" --rows nginx --no-header "${ARGS[@]}"
  "$HERE/instructions.sh" --rows nginx --nginx-access-log --no-header "${ARGS[@]}"
  exit 0
fi

# --- CPU time ---------------------------------------------------------------
[[ ${#ARGS[@]} -eq 0 ]] || { echo "telemetry_cost.sh --cpu: unknown option ${ARGS[0]}" >&2; exit 2; }
REQUESTS=${REQUESTS:-200000}
WARMUP=${WARMUP:-20000}
CONNS=${CONNS:-16}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
PATH=$PATH:/usr/sbin
for tool in h2load nginx taskset; do
  command -v "$tool" >/dev/null || { echo "telemetry_cost.sh: $tool not found" >&2; exit 1; }
done
log() { echo "[telemetry $(date +%H:%M:%S)] $*" >&2; }
wait_port() {  # $1 port: until it accepts, at most 10 s
  for _ in $(seq 1 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
HZ=$(getconf CLK_TCK)
cpu_ticks() {  # utime+stime of process $1, all threads
  local stat
  stat=$(cat /proc/"$1"/stat)
  stat=${stat##*) }  # the fields after the command name; utime is field 14
  set -- $stat
  echo $((${12} + ${13}))
}

log "building sluice_bench_server ${REV:-(working tree)}"
BIN=$("$HERE/instructions.sh" --build-only ${REV:+--rev "$REV"})
taskset -p -c "$LOAD_CPU" "${PIDS[0]}" >/dev/null  # the collector

nginx_conf() {  # $1 dir, $2 http{} body
  mkdir -p "$1/tmp"
  cat >"$1/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log crit;
events { worker_connections 1024; }
http {
  keepalive_requests 100000000;
  client_body_temp_path $1/tmp;
  proxy_temp_path $1/tmp;
  fastcgi_temp_path $1/tmp;
  uwsgi_temp_path $1/tmp;
  scgi_temp_path $1/tmp;
  $2
}
CONF
}
ORIGIN_PORT=$(free_port)
mkdir -p "$T/origin/www"
printf 'Hello from the sluice benchmark origin; 64-byte response body.\n' >"$T/origin/www/small"
nginx_conf "$T/origin" "access_log off; server { listen 127.0.0.1:$ORIGIN_PORT; root $T/origin/www; }"
taskset -c "$LOAD_CPU" nginx -p "$T/origin" -c "$T/origin/nginx.conf" >"$T/origin/out.log" 2>&1 &
PIDS+=($!)
wait_port "$ORIGIN_PORT" || { echo "origin did not start" >&2; exit 1; }

ROWS=(bare metrics log trace nginx nginx-log)
declare -A LABEL=(
  [bare]="sluice bare (\`--metrics off\`)"
  [metrics]="sluice metrics"
  [log]="sluice metrics + access log"
  [trace]="sluice metrics + access log + 1 % tracing"
  [nginx]="nginx, access log off"
  [nginx-log]="nginx, access log on"
)
declare -A BASE=([metrics]=bare [log]=bare [trace]=bare [nginx-log]=nginx)

# Prints "cpu_us_per_request requests_per_second" for one fresh server.
measure_row() {  # $1 row
  local row=$1 port pid dir=$T/$1 args=()
  port=$(free_port)
  rm -rf "$dir" && mkdir -p "$dir"
  case $row in
    bare) args=(--metrics off) ;;
    log) args=(--access-log "$dir/access.log") ;;
    trace) args=(--access-log "$dir/access.log" --trace-sampling 1 $OTLP) ;;
  esac
  case $row in
    nginx | nginx-log)
      local logs=off
      [[ $row == nginx-log ]] && logs=$dir/access.log
      nginx_conf "$dir" "access_log $logs;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  server { listen 127.0.0.1:$port; location / { proxy_pass http://origin;
    proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
      taskset -c "$PROXY_CPU" nginx -p "$dir" -c "$dir/nginx.conf" >"$dir/out.log" 2>&1 &
      ;;
    *)
      taskset -c "$PROXY_CPU" "$BIN" --port "$port" --origin-port "$ORIGIN_PORT" --workers 1 \
        "${args[@]}" >"$dir/out.log" 2>&1 &
      ;;
  esac
  pid=$!
  PIDS+=($pid)
  wait_port "$port" || { echo "$row did not start" >&2; cat "$dir/out.log" >&2; exit 1; }
  local url=http://127.0.0.1:$port/small c0 c1
  taskset -c "$LOAD_CPU" h2load --h1 -t1 -c"$CONNS" -m1 -n"$WARMUP" "$url" >"$dir/warm.out" 2>&1
  c0=$(cpu_ticks "$pid")
  taskset -c "$LOAD_CPU" h2load --h1 -t1 -c"$CONNS" -m1 -n"$REQUESTS" "$url" >"$dir/h2load.out" 2>&1
  c1=$(cpu_ticks "$pid")
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  grep -q "^status codes: $REQUESTS 2xx" "$dir/h2load.out" ||
    { echo "$row: not $REQUESTS responses 2xx" >&2; cat "$dir/h2load.out" >&2; exit 1; }
  awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$REQUESTS" '/^finished in/ { rps = $4 }
    END { printf "%.3f %s\n", c / hz * 1e6 / n, rps }' "$dir/h2load.out"
}

LOADS=()
for round in $(seq 1 "$ROUNDS"); do
  LOADS+=("$(cut -d' ' -f1-3 /proc/loadavg)")
  for row in "${ROWS[@]}"; do
    measure_row "$row" >"$T/row"  # not in a subshell: PIDS keeps its server
    read -r us rps <"$T/row"
    log "round $round: $row $us us/request, $rps req/s"
    echo "$round $row $us $rps" >>"$T/results"
  done
done

echo "| row | CPU us/request, median (min-max) | vs bare in the same round, median (min-max) | req/s, median |"
echo "|---|---:|---:|---:|"
python3 - "$T/results" <<PY
import statistics, sys
rows = "${ROWS[*]}".split()
label = {$(for r in "${ROWS[@]}"; do printf '"%s": """%s""", ' "$r" "${LABEL[$r]}"; done)}
base = {$(for r in "${!BASE[@]}"; do printf '"%s": "%s", ' "$r" "${BASE[$r]}"; done)}
us, rps = {}, {}
for line in open(sys.argv[1]):
    rnd, row, u, r = line.split()
    us[(rnd, row)] = float(u)
    rps.setdefault(row, []).append(float(r))
rounds = sorted({k[0] for k in us})
def span(v, fmt):
    return f"{fmt.format(statistics.median(v))} ({fmt.format(min(v))}..{fmt.format(max(v))})"
for row in rows:
    mine = [us[(n, row)] for n in rounds]
    rel = ""
    if row in base:
        rel = span([100 * (us[(n, row)] / us[(n, base[row])] - 1) for n in rounds], "{:+.1f} %")
    print(f"| {label[row]} | {span(mine, '{:.2f}')} | {rel} | {statistics.median(rps[row]):,.0f} |")
PY
echo
echo "$REQUESTS GET /small (64-byte body) per row after $WARMUP warm-up, h2load --h1 -t1" \
  "-c$CONNS -m1 (nghttp2 $(h2load --version | head -1 | cut -d/ -f2)), $ROUNDS rounds" \
  "interleaved; server on CPU $PROXY_CPU, origin nginx $(nginx -v 2>&1 | sed 's/.*\///')," \
  "collector and h2load on CPU $LOAD_CPU; $(nproc) cores," \
  "$(lscpu | sed -n 's/^Model name: *//p' | head -1); load average (1, 5, 15 min) at each" \
  "round's start: $(IFS=';'; echo "${LOADS[*]}")."
