#!/usr/bin/env bash
# Instructions per request, deterministic enough to compare commits on a
# noisy shared machine: each proxy runs under valgrind's callgrind, gets the
# same fixed request sequence (benchmarks/request_client.py) after a
# warm-up, and the user-space instructions it executed for them (Ir) are
# divided by the number of requests. Wall-clock numbers come from run.sh;
# this shows the effect of a change without the noise.
#
#   benchmarks/instructions.sh [--requests N] [--conns C] [--warmup N]
#                              [--rows sluice,nginx] [--rev REV[,REV...]]
#                              [--sluice-args "ARGS"] [--label NAME]
#                              [--nginx-access-log] [--keep DIR]
#                              [--h2 | --grpc] [--streams M] [--tls]
#   benchmarks/instructions.sh --build-only [--rev REV]
#
# --rev measures sluice at each listed commit (git archive into
# build-instr-<commit>/src, Release build of sluice_bench_server); without
# it, the working tree (build-instr/). The origin is a plain nginx on
# 127.0.0.1 outside valgrind; the client is Python (its cost is not counted).
# --sluice-args adds arguments to sluice_bench_server (its telemetry
# switches: benchmarks/telemetry_cost.sh), --label names that row;
# --nginx-access-log turns nginx's access log on (to a file), for a fair
# pair with a logging sluice; --keep copies each row's callgrind output
# into DIR, for callgrind_annotate. --h2 sends HTTP/2 instead: h2load -n
# (h2c with prior knowledge, one thread, --conns connections with --streams
# concurrent streams each, default 10), nginx listening "http2"; the proxies
# still speak HTTP/1.1 to the origin. h2load keeps M streams in flight, so
# how requests batch into reads varies a little from run to run. --grpc:
# as --h2 with gRPC-shaped POSTs (content-type application/grpc, te:
# trailers, the message of grpc_unary.py) to an h2c upstream on the origin
# nginx (grpc_origin.conf); sluice speaks h2c to it, nginx grpc_pass.
# --tls: the same GET /small over TLS 1.3 (ECDSA P-256 certificate; nginx
# "listen ssl", sluice_bench_server --tls); one client makes the
# handshakes and the warm-up on its connections before the counters are
# zeroed, so only keep-alive TLS requests are counted.
# Prints one Markdown table row per proxy. --build-only builds
# sluice_bench_server as the rows would (the first --rev, or the working
# tree) and prints its path (telemetry_cost.sh --cpu runs it natively).
set -euo pipefail

REQUESTS=${REQUESTS:-20000}
CONNS=${CONNS:-8}
WARMUP=${WARMUP:-2000}
ROWS=${ROWS:-sluice,nginx}
REVS=${REVS:-}
SLUICE_ARGS=${SLUICE_ARGS:-}
LABEL=${LABEL:-}
NGINX_LOG=off
HEADER=1
KEEP=
H2=0
GRPC=0
TLS=0
STREAMS=${STREAMS:-10}
BUILD_ONLY=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --requests) REQUESTS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --rev) REVS=$2; shift 2 ;;
    --sluice-args) SLUICE_ARGS=$2; shift 2 ;;
    --label) LABEL=$2; shift 2 ;;
    --nginx-access-log) NGINX_LOG=on; shift ;;
    --no-header) HEADER=0; shift ;;
    --keep) KEEP=$2; shift 2 ;;
    --h2) H2=1; shift ;;
    --grpc) H2=1; GRPC=1; shift ;;
    --streams) STREAMS=$2; shift 2 ;;
    --tls) TLS=1; shift ;;
    --build-only) BUILD_ONLY=1; shift ;;
    *) echo "instructions.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

[[ $TLS == 1 && $H2 == 1 ]] && { echo "instructions.sh: --tls is HTTP/1.1 only" >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PATH=$PATH:/usr/sbin
TOOLS=(valgrind callgrind_control nginx python3 cmake ninja)
[[ $H2 == 1 ]] && TOOLS+=(h2load)
[[ $BUILD_ONLY == 1 ]] && TOOLS=(cmake ninja)
for tool in "${TOOLS[@]}"; do
  command -v "$tool" >/dev/null || { echo "instructions.sh: $tool not found" >&2; exit 1; }
done
log() { echo "[instr $(date +%H:%M:%S)] $*" >&2; }

T=$(mktemp -d /tmp/sluice-instr.XXXXXX)
chmod 755 "$T"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {  # $1 port: until it accepts (valgrind starts slowly)
  for _ in $(seq 1 600); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null &&
      return 0
    sleep 0.1
  done
  return 1
}

# Builds sluice_bench_server for a commit (or the working tree: "") and
# prints its path.
build_sluice() {
  local rev=$1 dir src
  if [[ -n $rev ]]; then
    local commit
    commit=$(git -C "$ROOT" rev-parse --short "$rev")
    dir=$ROOT/build-instr-$commit
    src=$dir/src
    if [[ $(cat "$src/.instr-rev" 2>/dev/null) != "$commit" ]]; then
      rm -rf "$src" && mkdir -p "$src"
      git -C "$ROOT" archive "$commit" | tar -x -C "$src"
      echo "$commit" >"$src/.instr-rev"
    fi
  else
    dir=$ROOT/build-instr
    src=$ROOT
  fi
  # The bench server comes from this checkout, so every commit runs the same one.
  if [[ $src != "$ROOT" ]]; then
    mkdir -p "$src/benchmarks"
    cp -p "$HERE"/{CMakeLists.txt,*.cpp,*.c} "$src/benchmarks/"
    grep -q SLUICE_BUILD_BENCHMARKS "$src/CMakeLists.txt" ||
      printf '\noption(SLUICE_BUILD_BENCHMARKS "" OFF)\nif(SLUICE_BUILD_BENCHMARKS)\n  add_subdirectory(benchmarks)\nendif()\n' \
        >>"$src/CMakeLists.txt"
  fi
  cmake -S "$src" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_BENCHMARKS=ON \
    -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_EXAMPLES=OFF >/dev/null
  ninja -C "$dir" -j2 sluice_bench_server >/dev/null
  echo "$dir/benchmarks/sluice_bench_server"
}

if [[ $BUILD_ONLY == 1 ]]; then
  build_sluice "${REVS%%,*}"
  exit 0
fi

# --- origin: plain nginx, not measured --------------------------------------
ORIGIN_PORT=$(free_port)
GRPC_PORT=$(free_port)
mkdir -p "$T/origin/www" "$T/origin/tmp"
printf 'Hello from the sluice benchmark origin; 64-byte response body.\n' >"$T/origin/www/small"
python3 "$HERE/grpc_unary.py" frame >"$T/origin/www/grpc-reply"
sed -e "s|@PORT@|$GRPC_PORT|" -e "s|@ROOT@|$T/origin/www|" "$HERE/grpc_origin.conf" >"$T/origin/grpc.conf"
# What the proxies forward to.
UP_PORT=$ORIGIN_PORT UP_PROTO=http1
[[ $GRPC == 1 ]] && UP_PORT=$GRPC_PORT UP_PROTO=http2
nginx_common() {  # $1 dir
  cat <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log crit;
events { worker_connections 1024; }
EOF
}
{
  nginx_common "$T/origin"
  cat <<EOF
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $T/origin/tmp;
  proxy_temp_path $T/origin/tmp;
  fastcgi_temp_path $T/origin/tmp;
  uwsgi_temp_path $T/origin/tmp;
  scgi_temp_path $T/origin/tmp;
  server { listen 127.0.0.1:$ORIGIN_PORT; root $T/origin/www; }
  include $T/origin/grpc.conf;
}
EOF
} >"$T/origin/nginx.conf"
nginx -p "$T/origin" -c "$T/origin/nginx.conf" >"$T/origin/out.log" 2>&1 &
PIDS+=($!)
wait_port "$ORIGIN_PORT" || { echo "origin did not start" >&2; exit 1; }

# Sends $1 requests to the proxy on $PORT (HTTP/1.1 or, with --h2, HTTP/2);
# fails unless every one got a 200.
send() {
  if [[ $H2 == 0 ]]; then
    python3 "$HERE/request_client.py" "$PORT" "$1" "$CONNS" >/dev/null
    return
  fi
  local args=() path=/small
  if [[ $GRPC == 1 ]]; then
    args=(-d "$T/origin/www/grpc-reply" -H 'content-type: application/grpc' -H 'te: trailers')
    path=/bench.Echo/Call
  fi
  h2load -t1 -n "$1" -c "$CONNS" -m "$STREAMS" "${args[@]}" "http://127.0.0.1:$PORT$path" \
    >"$T/h2load.out" 2>&1
  grep -q "^status codes: $1 2xx" "$T/h2load.out" ||
    { echo "h2load: not $1 responses 200" >&2; cat "$T/h2load.out" >&2; return 1; }
}

# Runs `$@` (a proxy listening on $PORT) under callgrind and prints its
# instructions per request.
measure() {
  local name=$1; shift
  # valgrind expands % in file names: the row's label is not one.
  local file=${name//[^a-zA-Z0-9]/_}
  local out=$T/$file.callgrind
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$T/$file.log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  wait_port "$PORT" || { echo "$name did not start" >&2; cat "$T/$file.log" >&2; exit 1; }
  if [[ $TLS == 1 ]]; then
    # One client for both phases: its handshakes and warm-up come before
    # the counters are zeroed.
    coproc CLIENT { python3 "$HERE/request_client.py" --tls "$WARMUP" "$PORT" "$REQUESTS" "$CONNS"; }
    local client=$CLIENT_PID line
    read -r line <&"${CLIENT[0]}" || true
    [[ $line == warm ]] || { echo "$name: the TLS client failed" >&2; exit 1; }
    callgrind_control -z "$pid" >/dev/null 2>&1
    echo go >&"${CLIENT[1]}"
    wait "$client" || { echo "$name: the TLS client failed" >&2; exit 1; }
  else
    send "$WARMUP"
    callgrind_control -z "$pid" >/dev/null 2>&1
    send "$REQUESTS"
  fi
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # The dump after zeroing holds exactly the measured requests. Its
  # `summary:` line is the total (callgrind_annotate's PROGRAM TOTALS);
  # `totals:` repeats it, so counting both lines doubled every figure
  # before 2026-12-01's security section of RESULTS.md.
  local ir
  ir=$(cat "$out".* 2>/dev/null | awk '/^summary:/ {s += $2} END {printf "%.0f", s}')
  if [[ -n $KEEP ]]; then
    mkdir -p "$KEEP"
    cp "$out".* "$KEEP/" 2>/dev/null || true
  fi
  rm -f "$out" "$out".*
  python3 -c "print(f'| $name | {$ir / $REQUESTS:,.0f} | {$ir:,} |')"
}

# --tls: one self-signed ECDSA P-256 certificate for both proxies, TLS 1.3
# (nginx 1.22's default protocols lack it).
TLS_ARGS=()
NGINX_TLS=
if [[ $TLS == 1 ]]; then
  mkdir -p "$T/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -keyout "$T/tls/key.pem" -out "$T/tls/cert.pem" 2>/dev/null
  TLS_ARGS=(--tls "$T/tls/cert.pem" "$T/tls/key.pem")
  NGINX_TLS=" ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $T/tls/cert.pem;
    ssl_certificate_key $T/tls/key.pem"
fi

if [[ $HEADER == 1 ]]; then
  echo "| proxy | instructions/request | total Ir |"
  echo "|---|---:|---:|"
fi
IFS=, read -r -a rows <<<"$ROWS"
for row in "${rows[@]}"; do
  case $row in
    sluice)
      IFS=, read -r -a revs <<<"${REVS:-}"
      [[ ${#revs[@]} -eq 0 ]] && revs=("")
      for rev in "${revs[@]}"; do
        log "building sluice ${rev:-(working tree)}"
        bin=$(build_sluice "$rev")
        PORT=$(free_port)
        # shellcheck disable=SC2086 # SLUICE_ARGS is a list of arguments
        measure "${LABEL:-sluice${rev:+ $rev}}" "$bin" --port "$PORT" --origin-port "$UP_PORT" \
          --origin-protocol "$UP_PROTO" --workers 1 "${TLS_ARGS[@]}" ${SLUICE_ARGS//@T@/$T}
      done
      ;;
    nginx)
      PORT=$(free_port)
      mkdir -p "$T/nginx/tmp"
      {
        nginx_common "$T/nginx"
        cat <<EOF
http {
  access_log $([[ $NGINX_LOG == on ]] && echo "$T/nginx/access.log" || echo off);
  keepalive_requests 100000000;
  client_body_temp_path $T/nginx/tmp;
  proxy_temp_path $T/nginx/tmp;
  fastcgi_temp_path $T/nginx/tmp;
  uwsgi_temp_path $T/nginx/tmp;
  scgi_temp_path $T/nginx/tmp;
  upstream origin { server 127.0.0.1:$UP_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$PORT$([[ $H2 == 1 ]] && echo ' http2')$NGINX_TLS;
    location / {
      $([[ $GRPC == 1 ]] && echo 'grpc_pass grpc://origin;' || echo 'proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";')
    }
  }
}
EOF
      } >"$T/nginx/nginx.conf"
      measure "nginx$([[ $NGINX_LOG == on ]] && echo ' (access log on)')" nginx -p "$T/nginx" \
        -c "$T/nginx/nginx.conf"
      ;;
    *) echo "instructions.sh: unknown row $row" >&2; exit 2 ;;
  esac
done
echo
how="keep-alive over $CONNS connections"
what="GET /small (64-byte body)"
[[ $TLS == 1 ]] && how="$how over TLS 1.3 (ECDSA P-256; handshakes and warm-up on the same connections before counting)"
[[ $H2 == 1 ]] && how="over HTTP/2 (h2c; h2load -n -c$CONNS -m$STREAMS, nghttp2 $(h2load --version | head -1 | cut -d/ -f2)), HTTP/1.1 to the origin"
[[ $GRPC == 1 ]] && what="gRPC-shaped POST (12-byte request and reply, grpc-status trailer)" \
  how="${how/HTTP\/1.1 to the origin/h2c to the upstream}"
echo "$REQUESTS $what after $WARMUP warm-up, $how;" \
  "valgrind $(valgrind --version | sed 's/valgrind-//'), $(nginx -v 2>&1 | sed 's/.*\///') , $(nproc) cores"
