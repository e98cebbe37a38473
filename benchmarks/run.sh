#!/usr/bin/env bash
# sluice vs nginx vs HAProxy, one command: see benchmarks/README.md.
#
# Installs wrk, nginx, haproxy (Debian), builds sluice in Release, then runs
# rounds of direct / nginx / haproxy / sluice (interleaved) against one nginx
# origin, everything on 127.0.0.1, and prints a Markdown summary.
#
# Options (or the environment variables in brackets):
#   --rounds N        rounds of every row, >= 3 for RESULTS.md  [ROUNDS=3]
#   --duration S      measured seconds per run                  [DURATION=10]
#   --warmup S        warm-up seconds before each run           [WARMUP=3]
#   --idle N          idle keep-alive connections to hold, plain    [IDLE_CONNS=5000]
#                     (case small) and TLS (case tls-keepalive)
#   --cases LIST      bodies: small,16k                          [CASES=small,16k]
#   --rows LIST       direct,nginx,haproxy,sluice                [ROWS=...]
#   --sluice WHICH    auto|ingress|server (binary under test)    [SLUICE=auto]
#   --max-load X      wait until other processes use < X cores   [MAX_LOAD=0.7]
#   --tls-rows LIST   TLS rows: nginx,sluice (haproxy possible)  [TLS_ROWS=nginx,sluice]
#   --tls-cases LIST  tls-handshake,tls-resume,tls-keepalive     [TLS_CASES=all three]
#   --tls-duration S  measured seconds per TLS run               [TLS_DURATION=5]
#   --tls-only        only the TLS rows (no plain rows, no route table)
#   --no-tls          skip the TLS rows
#   --h2-rows LIST    HTTP/2 rows: direct,nginx,haproxy,sluice   [H2_ROWS=all four]
#   --h2-cases LIST   h2,h2-1stream,grpc,grpc-unary              [H2_CASES=all four]
#   --grpc-calls N    sequential calls per grpc-unary run        [GRPC_CALLS=5000]
#   --h2-only         only the HTTP/2 rows (no plain, TLS or route table)
#   --no-h2           skip the HTTP/2 rows
#   --workers-rows L  workers case (1 vs 2 workers): nginx,sluice  [WORKERS_ROWS=nginx,sluice]
#                     (haproxy possible: nbthread)
#   --workers-only    only the workers case (no plain, TLS, HTTP/2 or route table)
#   --no-workers      skip the workers case
#   --profile         also record a perf profile of sluice under load
#   --no-router       skip the route-table micro-benchmark (sluice_router_bench)
#   --no-install      do not apt-get anything
#   --no-build        use the existing build-bench binaries
#   --rev REV         measure git commit REV (exported with git archive into
#                     build-bench-<rev>/src) instead of the working tree, so
#                     edits in progress elsewhere in the tree cannot leak in
# TLS rows (cases tls-handshake, tls-resume, tls-keepalive): each proxy
# terminates TLS 1.3 with the same ECDSA P-256 certificate, generated at run
# time, in front of the same plain origin; see README.md.
# HTTP/2 rows (cases h2, h2-1stream: h2load over h2c to each proxy, HTTP/1.1
# to the same origin; grpc: h2load gRPC-shaped POSTs, h2c both sides;
# grpc-unary: python3-grpcio calls one at a time, h2c both sides): README.md.
# Workers case (workers-1, workers-2: each proxy with 1 and with 2 workers,
# everything unpinned, wrk -t2, /small): an estimate of the req/s scaling of
# two workers on two free cores, from CPU per request and how evenly the two
# workers share the work; README.md says what it can and cannot tell.
# Output: the summary on stdout and in build-bench/bench-<time>.md, raw rows
# in build-bench/bench-<time>.tsv.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-64}
IDLE_CONNS=${IDLE_CONNS:-5000}
CASES=${CASES:-small,16k}
ROWS=${ROWS:-direct,nginx,haproxy,sluice}
SLUICE=${SLUICE:-auto}
MAX_LOAD=${MAX_LOAD:-0.7}
LOAD_WAIT=${LOAD_WAIT:-1800}  # longest wait for a quiet machine, seconds
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
OTHERS_MAX=${OTHERS_MAX:-0.25}  # proxy-core CPU not charged to the proxy, cores
RETRIES=${RETRIES:-4}
PROFILE=${PROFILE:-0}
ROUTER=${ROUTER:-1}
INSTALL=${INSTALL:-1}
BUILD=${BUILD:-1}
REV=${REV:-}
TLS=${TLS:-1}
TLS_ONLY=${TLS_ONLY:-0}
TLS_ROWS=${TLS_ROWS:-nginx,sluice}
TLS_DURATION=${TLS_DURATION:-5}
TLS_WARMUP=${TLS_WARMUP:-1}
TLS_CASES=${TLS_CASES:-tls-handshake,tls-resume,tls-keepalive}
TLS_CLIENTS=${TLS_CLIENTS:-16}  # concurrent openssl s_time clients (tls-handshake)
H2=${H2:-1}
H2_ONLY=${H2_ONLY:-0}
H2_ROWS=${H2_ROWS:-direct,nginx,haproxy,sluice}
H2_CASES=${H2_CASES:-h2,h2-1stream,grpc,grpc-unary}
H2_CONNS=${H2_CONNS:-8}      # h2load connections (h2, grpc) ...
H2_STREAMS=${H2_STREAMS:-10} # ... and concurrent streams on each
GRPC_CALLS=${GRPC_CALLS:-5000}
WORKERS=${WORKERS:-1}          # the workers case on or off
WORKERS_ONLY=${WORKERS_ONLY:-0}
WORKERS_ROWS=${WORKERS_ROWS:-nginx,sluice}
WORKERS_CPUS=${WORKERS_CPUS:-0-$(($(nproc) - 1))}  # where everything runs in that case
WORKERS_WRK_THREADS=${WORKERS_WRK_THREADS:-2}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --idle) IDLE_CONNS=$2; shift ;;
    --cases) CASES=$2; shift ;;
    --rows) ROWS=$2; shift ;;
    --sluice) SLUICE=$2; shift ;;
    --max-load) MAX_LOAD=$2; shift ;;
    --tls-rows) TLS_ROWS=$2; shift ;;
    --tls-duration) TLS_DURATION=$2; shift ;;
    --tls-cases) TLS_CASES=$2; shift ;;
    --tls-only) TLS_ONLY=1 ;;
    --no-tls) TLS=0 ;;
    --h2-rows) H2_ROWS=$2; shift ;;
    --h2-cases) H2_CASES=$2; shift ;;
    --grpc-calls) GRPC_CALLS=$2; shift ;;
    --h2-only) H2_ONLY=1 ;;
    --no-h2) H2=0 ;;
    --workers-rows) WORKERS_ROWS=$2; shift ;;
    --workers-only) WORKERS_ONLY=1 ;;
    --no-workers) WORKERS=0 ;;
    --profile) PROFILE=1 ;;
    --no-router) ROUTER=0 ;;
    --no-install) INSTALL=0 ;;
    --no-build) BUILD=0 ;;
    --rev) REV=$2; shift ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p;}' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# --tls-only, --h2-only, --workers-only: that part alone.
only=$TLS_ONLY$H2_ONLY$WORKERS_ONLY
if [[ $only == *1* ]]; then
  TLS=$TLS_ONLY H2=$H2_ONLY WORKERS=$WORKERS_ONLY
  CASES=
  ROUTER=0
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SRC=$ROOT  # the sources built and measured
if [[ -n $REV ]]; then
  COMMIT=$(git -C "$ROOT" rev-parse --short "$REV")
  BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench-$COMMIT}
  SRC=$BUILD_DIR/src
  COMMIT_DESC="commit $COMMIT (git archive)"
else
  BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
  COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  COMMIT_DESC="working tree at commit $COMMIT"
  git -C "$ROOT" diff --quiet HEAD -- lib include examples 2>/dev/null ||
    COMMIT_DESC+=" + uncommitted changes in lib/include/examples"
fi
PY=/usr/bin/python3  # Debian's, which python3-grpcio (grpc rows) is installed for
log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# --- install ---------------------------------------------------------------
if [[ $INSTALL == 1 ]]; then
  need=()
  for pkg in wrk nginx haproxy curl libbenchmark-dev cmake ninja-build nghttp2-client python3-grpcio; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true) == installed ]] ||
      need+=("$pkg")
  done
  [[ $PROFILE == 1 ]] && ! command -v perf >/dev/null && need+=(linux-perf)
  if [[ ${#need[@]} -gt 0 ]]; then
    sudo=(); [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    log "apt-get install ${need[*]}"
    "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}" >/dev/null ||
      { "${sudo[@]}" apt-get update >/dev/null && \
        "${sudo[@]}" apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
  fi
  "$ROOT/scripts/install-deps.sh" >/dev/null
fi
for tool in wrk nginx haproxy taskset curl openssl h2load; do
  command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 1; }
done

# --- build -----------------------------------------------------------------
if [[ -n $REV && ( $BUILD == 1 || ! -d $SRC ) ]]; then
  # A fresh export only when the commit differs, so rebuilds stay incremental.
  if [[ $(cat "$SRC/.bench-rev" 2>/dev/null) != "$COMMIT" ]]; then
    log "exporting commit $COMMIT to $SRC"
    rm -rf "$SRC" && mkdir -p "$SRC"
    git -C "$ROOT" archive "$COMMIT" | tar -x -C "$SRC"
    echo "$COMMIT" >"$SRC/.bench-rev"
  fi
  # The harness itself comes from this checkout.
  mkdir -p "$SRC/benchmarks"
  cp -p "$HERE"/{CMakeLists.txt,*.cpp,*.c,*.py,*.sh,*.md} "$SRC/benchmarks/"
  grep -q SLUICE_BUILD_BENCHMARKS "$SRC/CMakeLists.txt" ||
    printf '\noption(SLUICE_BUILD_BENCHMARKS "Build micro-benchmarks" OFF)\nif(SLUICE_BUILD_BENCHMARKS)\n  add_subdirectory(benchmarks)\nendif()\n' \
      >>"$SRC/CMakeLists.txt"
fi
if [[ $BUILD == 1 ]]; then
  log "building sluice (Release) from $SRC in $BUILD_DIR"
  cmake -S "$SRC" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DSLUICE_BUILD_BENCHMARKS=ON -DSLUICE_BUILD_TESTS=OFF >/dev/null
  ninja -C "$BUILD_DIR" -j"$(nproc)" sluice_bench_server sluice_idle_conns sluice_router_bench \
    >/dev/null
  if [[ $SLUICE != server ]]; then
    ninja -C "$BUILD_DIR" -j"$(nproc)" sluice-ingress >/dev/null 2>&1 ||
      log "sluice-ingress did not build; falling back to sluice_bench_server"
  fi
fi
BENCH_SERVER=$BUILD_DIR/benchmarks/sluice_bench_server
IDLE_CLIENT=$BUILD_DIR/benchmarks/sluice_idle_conns
INGRESS=$BUILD_DIR/examples/ingress/sluice-ingress

# --- scratch space and cleanup ---------------------------------------------
T=$(mktemp -d /tmp/sluice-bench.XXXXXX)
chmod 755 "$T"  # nginx workers run as nobody when started by root
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.3
  for pid in "${PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  [[ ${KEEP_TMP:-0} == 1 ]] && log "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt $((IDLE_CONNS * 2 + 1000)) ]]; then
  log "ulimit -n is $(ulimit -n): lowering --idle to fit"
  IDLE_CONNS=$(( ($(ulimit -n) - 1000) / 2 ))
fi

# HAProxy needs two descriptors per connection and refuses to start otherwise.
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
HAPROXY_MAXCONN=$(( (NOFILE - 200) / 2 ))

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (bounded) until http://127.0.0.1:$1$2 answers 200 (https when
# TLS_RUN is 1; the certificate is self-signed, so not verified; h2c with
# prior knowledge when H2_RUN is 1).
TLS_RUN=0
H2_RUN=0
wait_http() {
  local deadline=$((SECONDS + 10)) scheme=http h2=()
  [[ $TLS_RUN == 1 ]] && scheme=https
  [[ $H2_RUN == 1 ]] && h2=(--http2-prior-knowledge)
  while ((SECONDS < deadline)); do
    curl -fsSk "${h2[@]}" -o /dev/null --max-time 1 "$scheme://127.0.0.1:$1$2" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# All pids of a process tree (nginx: master and worker).
tree_pids() {
  local pid=$1
  echo "$pid"
  local child
  for child in $(pgrep -P "$pid" 2>/dev/null); do tree_pids "$child"; done
}

# utime+stime in clock ticks of every process of a tree, all threads included.
cpu_ticks() {
  local total=0 pid stat
  for pid in $(tree_pids "$1"); do
    stat=$(cat /proc/"$pid"/stat 2>/dev/null) || continue
    stat=${stat##*) }  # fields after the command name; utime is field 14
    set -- $stat
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

# utime+stime in clock ticks of each thread of a process tree, one "tid ticks"
# line per thread: sluice's workers are threads of one process, nginx's are
# processes (of one thread each).
task_ticks() {
  local pid task stat
  for pid in $(tree_pids "$1"); do
    for task in /proc/"$pid"/task/*; do
      stat=$(cat "$task"/stat 2>/dev/null) || continue
      stat=${stat##*) }
      set -- $stat
      echo "${task##*/} $((${12} + ${13}))"
    done
  done
}

# utime+stime in clock ticks of this script's reaped children (wrk's CPU time,
# read after it has been waited for).
child_ticks() {
  local stat
  stat=$(cat /proc/$$/stat)
  stat=${stat##*) }  # cutime and cstime are fields 16 and 17
  set -- $stat
  echo $((${14} + ${15}))
}

# Lets every thread of process tree $2 run on CPUs $1 (taskset list).
set_affinity() {
  local pid
  for pid in $(tree_pids "$2"); do taskset -a -p -c "$1" "$pid" >/dev/null; done
}

# Downstream connections (established, local port $2) held by each epoll
# instance of process tree $1, most first, "/"-separated and padded with 0s to
# $3 entries. Each worker has its own epoll instance (an nginx worker process,
# a sluice worker thread's io_context, an HAProxy thread), and its accepted
# sockets are registered there, so this is the connections per worker.
worker_conns() {
  local pid hex
  hex=$(printf ':%04X' "$2")
  for pid in $(tree_pids "$1"); do
    find /proc/"$pid"/fd -lname 'socket:*' -printf "fd $pid %f %l\n" 2>/dev/null
    grep -s -H '^tfd:' /proc/"$pid"/fdinfo/* | sed "s|^/proc/$pid/fdinfo/|ep $pid/|"
  done | awk -v hex="$hex" -v want="$3" '
    FNR == NR { if ($4 == "01" && substr($2, length($2) - 4) == hex) est["socket:[" $10 "]"] = 1; next }
    $1 == "fd" { link[$2 "/" $3] = $4; next }
    $1 == "ep" {  # ep PID/EPFD:tfd: FD events: ...
      split($2, a, ":"); split(a[1], b, "/")
      if (link[b[1] "/" $3] in est) n[a[1]]++
    }
    END {
      k = 0
      for (e in n) c[++k] = n[e]
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (c[j] > c[i]) { t = c[i]; c[i] = c[j]; c[j] = t }
      for (i = k + 1; i <= want; i++) c[i] = 0
      if (want > k) k = want
      for (i = 1; i <= k; i++) printf "%s%d", (i > 1 ? "/" : ""), c[i]
      print ""
    }' /proc/net/tcp -
}

# Largest value of a /proc/<pid>/status field (kB) over a tree: the worker.
status_kb() {
  local max=0 pid v
  for pid in $(tree_pids "$1"); do
    v=$(awk -v f="$2:" '$1 == f { print $2 }' /proc/"$pid"/status 2>/dev/null || echo 0)
    if ((${v:-0} > max)); then max=$v; fi
  done
  echo "$max"
}

# Busy jiffies per CPU ("cpu0 cpu1 ..."): user, nice, system, irq and steal.
# Softirq is left out: loopback TCP work is done there and is not charged to
# any task, so it would look like another process. With $1 = 1 softirq is
# included (run_workers_row): without IRQ time accounting (the case on this
# machine's kernel: the CPU time of nginx + wrk came to busy time with
# softirq, not without) a tick that lands in softirq work done in a task's
# context is charged to that task's stime as well, so busy time set against
# the CPU time of every process that made the load must include it.
busy_jiffies() {
  awk -v softirq="${1:-0}" '/^cpu[0-9]/ { printf "%d ", $2 + $3 + $4 + $7 + $9 + softirq * $8 }' /proc/stat
}

# Share of the machine (in cores) used by others over $1 seconds while only
# our idle processes run.
foreign_cores() {
  local a b
  a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
  sleep "$1"
  b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
  awk -v a="$a" -v b="$b" -v s="$1" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.2f", (b - a) / hz / s }'
}

wait_quiet() {
  local deadline=$((SECONDS + LOAD_WAIT)) used load1
  while :; do
    used=$(foreign_cores 3)
    load1=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v u="$used" -v m="$MAX_LOAD" 'BEGIN { exit !(u < m) }'; then
      log "machine quiet: others use $used cores (loadavg1 $load1)"
      QUIET=$used
      return 0
    fi
    if ((SECONDS >= deadline)); then
      log "machine still busy after ${LOAD_WAIT}s (others use $used cores); measuring anyway"
      QUIET=$used
      return 0
    fi
    log "machine busy: others use $used cores (loadavg1 $load1), waiting"
    sleep 20
  done
}

# --- origin ----------------------------------------------------------------
ORIGIN_PORT=$(free_port)
# The same nginx is the grpc rows' h2c upstream (grpc_origin.conf).
GRPC_ORIGIN_PORT=$(free_port)
mkdir -p "$T/origin/www" "$T/origin/tmp"
printf 'Hello from the sluice benchmark origin; 64-byte response body.\n' >"$T/origin/www/small"
head -c 16384 /dev/zero | tr '\0' 'x' >"$T/origin/www/16k"
"$PY" "$HERE/grpc_unary.py" frame >"$T/origin/www/grpc-reply"
cp "$T/origin/www/grpc-reply" "$T/grpc-request"  # h2load -d: the same message
sed -e "s|@PORT@|$GRPC_ORIGIN_PORT|" -e "s|@ROOT@|$T/origin/www|" "$HERE/grpc_origin.conf" \
  >"$T/origin/grpc.conf"
cat >"$T/origin/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $T/origin/nginx.pid;
error_log $T/origin/error.log crit;
worker_rlimit_nofile 20000;
events { worker_connections 16000; }
http {
  access_log off;
  default_type text/plain;
  sendfile on;
  tcp_nopush on;
  open_file_cache max=16 inactive=600s;
  open_file_cache_valid 600s;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  client_body_temp_path $T/origin/tmp;
  proxy_temp_path $T/origin/tmp;
  fastcgi_temp_path $T/origin/tmp;
  uwsgi_temp_path $T/origin/tmp;
  scgi_temp_path $T/origin/tmp;
  server {
    listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
    root $T/origin/www;
  }
  include $T/origin/grpc.conf;
}
EOF
taskset -c "$LOAD_CPU" nginx -p "$T/origin" -c "$T/origin/nginx.conf" -e "$T/origin/error.log" \
  >"$T/origin/out.log" 2>&1 &
ORIGIN_PID=$!
PIDS+=("$ORIGIN_PID")
wait_http "$ORIGIN_PORT" /small || { echo "origin did not start" >&2; cat "$T/origin/"*.log >&2; exit 1; }

# The grpc-unary upstream: a python3-grpcio server (grpc_unary.py) on the
# load core, started only when that case runs.
GRPCIO_PORT=
if [[ $H2 == 1 && ,$H2_CASES, == *,grpc-unary,* ]]; then
  GRPCIO_PORT=$(free_port)
  taskset -c "$LOAD_CPU" "$PY" "$HERE/grpc_unary.py" serve "$GRPCIO_PORT" >"$T/grpcio.out" 2>&1 &
  PIDS+=($!)
  deadline=$((SECONDS + 20))
  until grep -q ready "$T/grpcio.out" 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "grpc_unary.py serve did not start" >&2; cat "$T/grpcio.out" >&2; exit 1; }
    sleep 0.1
  done
fi

# What the proxies forward to: the HTTP/1.1 origin, or for the gRPC cases an
# h2c upstream (run_row sets these per case).
UP_PORT=$ORIGIN_PORT
UP_PROTO=http1

# --- TLS certificate -----------------------------------------------------------
# One self-signed ECDSA P-256 certificate for every TLS-terminating proxy.
if [[ $TLS == 1 ]]; then
  mkdir -p "$T/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$T/tls/key.pem" -out "$T/tls/cert.pem" -days 2 -subj /CN=bench.local \
    -addext subjectAltName=DNS:bench.local >/dev/null 2>&1 ||
    { echo "run.sh: openssl could not make the benchmark certificate" >&2; exit 1; }
  cat "$T/tls/cert.pem" "$T/tls/key.pem" >"$T/tls/combined.pem"  # HAProxy's crt
  chmod 644 "$T/tls/"*.pem  # nginx workers may run as nobody
fi

# --- proxies ---------------------------------------------------------------
write_nginx_proxy() {  # $1 port
  mkdir -p "$T/nginx/tmp"
  # TLS: nginx defaults otherwise (protocols up to TLS 1.3, session tickets on,
  # no shared session cache).
  # nginx 1.22's default ssl_protocols lacks TLSv1.3 (added to the default in
  # 1.23.4), so it is named, with sluice's default range: TLS 1.2 to 1.3.
  local NGINX_LISTEN=""
  [[ $TLS_RUN == 1 ]] && NGINX_LISTEN=" ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $T/tls/cert.pem;
    ssl_certificate_key $T/tls/key.pem"
  # HTTP/2 rows: h2c only on the listener (nginx 1.22 takes prior knowledge
  # on a plain "http2" listen); gRPC rows pass h2c to the upstream.
  [[ $H2_RUN == 1 ]] && NGINX_LISTEN=" http2"
  # Several workers: one listening socket each (SO_REUSEPORT), as sluice
  # binds them; on one shared socket nginx's workers split 64 connections
  # as unevenly as 51/13.
  [[ $PROXY_WORKERS -gt 1 ]] && NGINX_LISTEN+=" reuseport"
  local pass="proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";"
  [[ $UP_PROTO == http2 ]] && pass="grpc_pass grpc://origin;"
  cat >"$T/nginx/nginx.conf" <<EOF
worker_processes $PROXY_WORKERS;
daemon off;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log crit;
worker_rlimit_nofile 20000;
events { worker_connections 16000; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  client_body_temp_path $T/nginx/tmp;
  proxy_temp_path $T/nginx/tmp;
  fastcgi_temp_path $T/nginx/tmp;
  uwsgi_temp_path $T/nginx/tmp;
  scgi_temp_path $T/nginx/tmp;
  upstream origin {
    server 127.0.0.1:$UP_PORT;
    keepalive 128;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
  }
  server {
    listen 127.0.0.1:$1 backlog=4096$NGINX_LISTEN;
    location / {
      $pass
    }
  }
}
EOF
}

write_haproxy() {  # $1 port
  mkdir -p "$T/haproxy"
  local HAPROXY_BIND=""
  [[ $TLS_RUN == 1 ]] && HAPROXY_BIND=" ssl crt $T/tls/combined.pem"
  [[ $H2_RUN == 1 ]] && HAPROXY_BIND=" proto h2"
  local server_proto=""
  [[ $UP_PROTO == http2 ]] && server_proto=" proto h2"
  cat >"$T/haproxy/haproxy.cfg" <<EOF
global
  nbthread $PROXY_WORKERS
  maxconn $HAPROXY_MAXCONN
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  timeout http-keep-alive 600s
  http-reuse always
frontend fe
  bind 127.0.0.1:$1$HAPROXY_BIND
  default_backend be
backend be
  server origin 127.0.0.1:$UP_PORT$server_proto
EOF
}

write_ingress_yaml() {  # $1 port
  mkdir -p "$T/sluice"
  local up_protocol=HTTP  # the listener takes HTTP/1.1 and h2c either way
  [[ $UP_PROTO == http2 ]] && up_protocol=GRPC
  cat >"$T/sluice/bench.yaml" <<EOF
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bench-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: $1
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bench
spec:
  hosts:
  - "*"
  gateways:
  - bench-gateway
  http:
  - route:
    - destination:
        host: origin.bench.local
        port:
          number: $UP_PORT
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: origin
spec:
  hosts:
  - origin.bench.local
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - number: $UP_PORT
    name: upstream
    protocol: $up_protocol
  endpoints:
  - address: 127.0.0.1
EOF
}

# The proxies' workers (nginx worker_processes, HAProxy nbthread, sluice
# --workers) and the CPUs they may run on: 1 on PROXY_CPU, except in the
# workers case (run_workers_row).
PROXY_WORKERS=1
PROXY_CPUS=$PROXY_CPU

# Starts proxy $1 on port $2 pinned to PROXY_CPUS; sets PROXY_PID.
start_proxy() {
  local name=$1 port=$2
  mkdir -p "$T/$name"
  case $name in
    nginx)
      write_nginx_proxy "$port"
      taskset -c "$PROXY_CPUS" nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" \
        -e "$T/nginx/error.log" >"$T/nginx/out.log" 2>&1 &
      ;;
    haproxy)
      write_haproxy "$port"
      taskset -c "$PROXY_CPUS" haproxy -db -f "$T/haproxy/haproxy.cfg" >"$T/haproxy/out.log" 2>&1 &
      ;;
    sluice)
      if [[ $TLS_RUN == 1 ]]; then
        # TLS rows always use the bench server (TlsServer from the PEM files).
        taskset -c "$PROXY_CPUS" "$BENCH_SERVER" --port "$port" --origin-port "$ORIGIN_PORT" \
          --workers "$PROXY_WORKERS" --tls "$T/tls/cert.pem" "$T/tls/key.pem" >"$T/sluice/out.log" 2>&1 &
      elif [[ $SLUICE_KIND == ingress ]]; then
        write_ingress_yaml "$port"
        taskset -c "$PROXY_CPUS" "$INGRESS" --config "$T/sluice/bench.yaml" --workers "$PROXY_WORKERS" \
          "${INGRESS_BIND[@]}" >"$T/sluice/out.log" 2>&1 &
      else
        taskset -c "$PROXY_CPUS" "$BENCH_SERVER" --port "$port" --origin-port "$UP_PORT" \
          --origin-protocol "$UP_PROTO" --workers "$PROXY_WORKERS" >"$T/sluice/out.log" 2>&1 &
      fi
      ;;
  esac
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  if ! wait_http "$port" /small; then
    echo "run.sh: $name did not come up on port $port" >&2
    cat "$T/$name/"*.log >&2 || true
    stop_proxy
    return 1
  fi
}

stop_proxy() {
  kill -TERM "$PROXY_PID" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while kill -0 "$PROXY_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -KILL "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
}

# Which sluice binary: sluice-ingress when it serves the YAML above.
SLUICE_KIND=server
INGRESS_BIND=()
if [[ $SLUICE != server && -x $INGRESS ]]; then
  help=$("$INGRESS" --help 2>&1 || true)
  for flag in --bind --address --listen-address; do
    if grep -q -- "$flag" <<<"$help"; then INGRESS_BIND=("$flag" 127.0.0.1); break; fi
  done
  if grep -q -- --config <<<"$help"; then
    SLUICE_KIND=ingress
    probe_port=$(free_port)
    if start_proxy sluice "$probe_port"; then
      stop_proxy
    else
      SLUICE_KIND=server
    fi
  fi
  [[ $SLUICE == ingress && $SLUICE_KIND != ingress ]] &&
    { echo "run.sh: sluice-ingress --config does not serve" >&2; exit 1; }
fi
if [[ $SLUICE_KIND == ingress ]]; then
  SLUICE_DESC="sluice-ingress --config (Istio YAML) --workers 1 ${INGRESS_BIND[*]}"
else
  SLUICE_DESC="benchmarks/sluice_bench_server --workers 1 (public C++ API, one catch-all route)"
fi
log "sluice under test: $SLUICE_DESC"

# Parses wrk --latency output: "rps p50_us p99_us requests errors".
parse_wrk() {
  awk '
    function us(v) {
      if (v ~ /us$/) return v + 0;
      if (v ~ /ms$/) return (v + 0) * 1000;
      if (v ~ /s$/) return (v + 0) * 1000000;
      return v + 0;
    }
    /Requests\/sec:/ { rps = $2 }
    /requests in/ { reqs = $1 }
    /^ +50%/ { p50 = us($2) }
    /^ +99%/ { p99 = us($2) }
    /Non-2xx/ { err += $NF }
    /Socket errors/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    END { printf "%s %s %s %s %d\n", rps, p50, p99, reqs, err }' "$1"
}

RAW=$T/raw.tsv
printf 'round\tcase\trow\trps\tp50_us\tp99_us\trequests\terrors\tcpu_us_per_req\tpeak_rss_kb\tidle_bytes_per_conn\tidle_open\tbusy_load_cpu\tbusy_proxy_cpu\tothers_on_proxy_cpu\tforeign_cores_before\n' >"$RAW"
# The workers case's rows (run_workers_row): worker_cpu_shares is each worker's
# share of the workers' CPU time in %, most first; worker_ticks_sum and
# worker_ticks_max that CPU time in clock ticks; conns_per_worker the
# downstream connections of each worker at mid-run.
WORKERS_RAW=$T/workers.tsv
printf 'round\trow\tworkers\trps\tp50_us\tp99_us\trequests\terrors\tcpu_us_per_req\tproxy_cores\tworker_cpu_shares\tworker_ticks_sum\tworker_ticks_max\tconns_per_worker\tothers_cores\tforeign_cores_before\n' >"$WORKERS_RAW"
HZ=$(getconf CLK_TCK)

# $TLS_CLIENTS concurrent `openssl s_time -new` clients on port $1 for $2
# seconds: each loops connect, full handshake (no resumption), GET /small
# (HTTP/1.0), read to close. Prints what parse_wrk prints ("rps p50 p99
# requests errors"; no latencies), counting a client that read less than a
# response per connection as errors.
stime_load() {
  local i pids=() t0 t1
  rm -f "$T"/stime-client.*
  t0=$(date +%s.%N)
  for ((i = 0; i < TLS_CLIENTS; i++)); do
    taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:$1" -new -time "$2" -www /small \
      >"$T/stime-client.$i" 2>&1 </dev/null &
    pids+=($!)
    PIDS+=($!)
  done
  wait "${pids[@]}" 2>/dev/null || true
  t1=$(date +%s.%N)
  # "N connections in S real seconds, B bytes read per connection"
  cat "$T"/stime-client.* | awk -v s="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" '
    / connections in .* real seconds/ { n += $1; if ($(NF - 4) + 0 < 100) e += $1 }
    END { printf "%.2f - - %d %d\n", n / s, n, e }'
}

# h2load (one thread, h2c with prior knowledge) on port $1 for $2 seconds,
# case $3: h2 (H2_CONNS connections x H2_STREAMS concurrent streams, GET
# /small), h2-1stream (CONNS connections, one stream each) or grpc (as h2,
# POSTs of one gRPC message with content-type application/grpc and te:
# trailers). Prints what parse_wrk prints; p50 and p99 come from h2load's
# per-request log (its summary has only min, max, mean and sd). Errors are
# failed, errored and timed-out requests and statuses 4xx/5xx.
h2_load() {
  local args=(-c"$H2_CONNS" -m"$H2_STREAMS") path=/small
  case $3 in
    h2-1stream) args=(-c"$CONNS" -m1) ;;
    grpc)
      args+=(-d "$T/grpc-request" -H 'content-type: application/grpc' -H 'te: trailers')
      path=/bench.Echo/Call
      ;;
  esac
  taskset -c "$LOAD_CPU" h2load -t1 "${args[@]}" -D "$2" --log-file="$T/h2load.log" \
    "http://127.0.0.1:$1$path" >"$T/h2load.out" 2>&1 || true
  local pct
  pct=$(cut -f3 "$T/h2load.log" | sort -n | awk '{ v[NR] = $1 }
    END { if (NR) printf "%d %d", v[int((NR - 1) * 0.5) + 1], v[int((NR - 1) * 0.99) + 1]; else print "- -" }')
  awk -v pct="$pct" '
    /^finished in/ { rps = $4 }
    /^requests:/ { done = $6; err = $10 + $12 + $14 }
    /^status codes:/ { err += $7 + $9 }
    END { split(pct, p, " "); printf "%s %s %s %d %d\n", rps, p[1], p[2], done, err }' \
    "$T/h2load.out"
}

# One measured run of row $2 for case $3 in round $1. Cases: a body (small,
# 16k) over plain HTTP, or over TLS, always /small: tls-handshake (every
# request on a new connection with a full handshake: stime_load),
# tls-resume (wrk with Connection: close: wrk reconnects and resumes the
# session with the proxy's session ticket) and tls-keepalive (wrk over
# kept-alive TLS connections).
run_row() {
  local round=$1 row=$2 case=$3 port url
  local scheme=http path=$case dur=$DURATION warm=$WARMUP wrk_args=()
  TLS_RUN=0 H2_RUN=0 UP_PORT=$ORIGIN_PORT UP_PROTO=http1
  PROXY_WORKERS=1 PROXY_CPUS=$PROXY_CPU
  case $case in
    tls-*)
      TLS_RUN=1 scheme=https path=small dur=$TLS_DURATION warm=$TLS_WARMUP
      [[ $case == tls-resume ]] && wrk_args=(-H 'Connection: close')
      ;;
    h2 | h2-1stream) H2_RUN=1 path=small ;;
    grpc) H2_RUN=1 path=small UP_PORT=$GRPC_ORIGIN_PORT UP_PROTO=http2 ;;
    grpc-unary) H2_RUN=1 path=small UP_PORT=$GRPCIO_PORT UP_PROTO=http2 ;;
  esac
  if [[ $row == direct ]]; then
    port=$UP_PORT
  else
    port=$(free_port)
    start_proxy "$row" "$port" || exit 1
  fi
  url="$scheme://127.0.0.1:$port/$path"
  if [[ $case == grpc ]]; then
    # A real gRPC client must take what this row relays as a successful call.
    "$PY" "$HERE/grpc_unary.py" call "$port" 1 1 >/dev/null ||
      { log "$row: gRPC call through it failed"; exit 1; }
  fi
  if [[ $case == tls-handshake ]]; then
    stime_load "$port" "$warm" >/dev/null
  elif [[ $case == grpc-unary ]]; then
    taskset -c "$LOAD_CPU" "$PY" "$HERE/grpc_unary.py" call "$port" 200 >/dev/null
  elif [[ $H2_RUN == 1 ]]; then
    h2_load "$port" "$warm" "$case" >/dev/null
  else
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${warm}s" "${wrk_args[@]}" "$url" >/dev/null
  fi
  local c0=0 c1=0 b0 b1
  if [[ $row != direct ]]; then c0=$(cpu_ticks "$PROXY_PID"); fi
  b0=($(busy_jiffies))
  local t0=$EPOCHREALTIME
  if [[ $case == tls-handshake ]]; then
    stime_load "$port" "$dur" >"$T/stime.out"
  elif [[ $case == grpc-unary ]]; then
    # The channel connects inside the window: one connection, amortised.
    taskset -c "$LOAD_CPU" "$PY" "$HERE/grpc_unary.py" call "$port" "$GRPC_CALLS" >"$T/stime.out"
    # A fixed number of calls: the load figures below use the time they took.
    dur=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
  elif [[ $H2_RUN == 1 ]]; then
    h2_load "$port" "$dur" "$case" >"$T/stime.out"
  else
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${dur}s" --latency "${wrk_args[@]}" "$url" >"$T/wrk.out"
  fi
  b1=($(busy_jiffies))
  if [[ $row != direct ]]; then c1=$(cpu_ticks "$PROXY_PID"); fi
  if [[ $case == tls-handshake || $H2_RUN == 1 ]]; then
    read -r rps p50 p99 reqs errs <"$T/stime.out"
  else
    read -r rps p50 p99 reqs errs < <(parse_wrk "$T/wrk.out")
  fi
  local cpu_us=- hwm=- idle_b=- idle_open=-
  if [[ $row != direct ]]; then
    cpu_us=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.2f", c / hz * 1e6 / n }')
    hwm=$(status_kb "$PROXY_PID" VmHWM)
    if [[ $IDLE_CONNS -gt 0 && ($case == small && $TLS_RUN == 0 || $case == tls-keepalive) ]]; then
      # A fresh process that has served a few requests, so memory freed by the
      # load run cannot hide the idle connections' cost. TLS ones come from
      # a Python client (handshake, one request, then idle).
      stop_proxy
      start_proxy "$row" "$port" || exit 1
      local rss0 rss1 client i idle_client=("$IDLE_CLIENT")
      [[ $TLS_RUN == 1 ]] && idle_client=("$PY" "$HERE/idle_tls_conns.py")
      for i in 1 2 3 4 5; do curl -kfsS -o /dev/null --max-time 2 "$url"; done
      sleep 0.5
      rss0=$(status_kb "$PROXY_PID" VmRSS)
      "${idle_client[@]}" "$port" "$IDLE_CONNS" 120 /small >"$T/idle.out" 2>"$T/idle.err" &
      client=$!
      PIDS+=("$client")
      local deadline=$((SECONDS + 90))
      while ! grep -q ready "$T/idle.out" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
      sleep 1  # responses are all read; let the proxy finish its bookkeeping
      rss1=$(status_kb "$PROXY_PID" VmRSS)
      idle_open=$(awk '{ print $2 }' "$T/idle.out" 2>/dev/null || echo 0)
      kill -TERM "$client" 2>/dev/null || true
      wait "$client" 2>/dev/null || true
      if [[ ${idle_open:-0} -gt 0 ]]; then
        idle_b=$(awk -v a="$rss0" -v b="$rss1" -v n="$idle_open" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
      fi
      if [[ ${idle_open:-0} != "$IDLE_CONNS" ]]; then
        log "$row: only ${idle_open:-0} idle connections: $(head -c 300 "$T/idle.err")"
      fi
    fi
    stop_proxy
  fi
  local busy_load busy_proxy proxy_cores others
  busy_load=$(awk -v a="${b0[$LOAD_CPU]}" -v b="${b1[$LOAD_CPU]}" -v hz="$HZ" -v s="$dur" 'BEGIN { printf "%.2f", (b - a) / hz / s }')
  busy_proxy=$(awk -v a="${b0[$PROXY_CPU]}" -v b="${b1[$PROXY_CPU]}" -v hz="$HZ" -v s="$dur" 'BEGIN { printf "%.2f", (b - a) / hz / s }')
  # CPU time on the proxy's core not charged to the proxy: other processes.
  proxy_cores=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v s="$dur" 'BEGIN { printf "%.2f", c / hz / s }')
  others=$(awk -v b="$busy_proxy" -v p="$proxy_cores" 'BEGIN { printf "%.2f", b - p }')
  too_busy "$others" "round $round $case $row: ${others} of the proxy core went elsewhere" && return 3
  tsv "$round" "$case" "$row" "$rps" "$p50" "$p99" "$reqs" "$errs" "$cpu_us" "$hwm" "$idle_b" \
    "$idle_open" "$busy_load" "$busy_proxy" "$others" "$QUIET" >>"$RAW"
  log "round $round $case $row: $rps req/s p50 ${p50}us p99 ${p99}us cpu ${cpu_us}us/req hwm ${hwm}kB idle ${idle_b}B/conn errors $errs"
}

# True, after logging "$2 (> OTHERS_MAX); discarded", when $1 (cores other
# processes used during a run) exceeds OTHERS_MAX: the run is redone.
too_busy() {
  awk -v o="$1" -v m="$OTHERS_MAX" 'BEGIN { exit !(o > m) }' || return 1
  log "$2 (> $OTHERS_MAX); discarded"
}

# One raw row: the arguments, tab-separated.
tsv() {
  local IFS=$'\t'
  echo "$*"
}

# One run of the workers case $3 (workers-1 or workers-2: the proxy's worker
# count) for row $2 in round $1. Origin, proxy and wrk -t$WORKERS_WRK_THREADS
# all may run on every core (WORKERS_CPUS), so the 1- and 2-worker runs are
# placed alike; /small, keep-alive. Records in WORKERS_RAW: req/s, the
# proxy's CPU per request, the CPU of each worker (the N threads of the proxy
# that used most CPU) and the downstream connections each worker held at
# mid-run. Returns 3 when other processes used more than OTHERS_MAX cores.
run_workers_row() {
  local round=$1 row=$2 n=${3#workers-} port url
  TLS_RUN=0 H2_RUN=0 UP_PORT=$ORIGIN_PORT UP_PROTO=http1
  PROXY_WORKERS=$n PROXY_CPUS=$WORKERS_CPUS
  set_affinity "$WORKERS_CPUS" "$ORIGIN_PID"
  port=$(free_port)
  start_proxy "$row" "$port" || exit 1
  url="http://127.0.0.1:$port/small"
  local wrk=(taskset -c "$WORKERS_CPUS" wrk -t"$WORKERS_WRK_THREADS" -c"$CONNS")
  "${wrk[@]}" -d"${WARMUP}s" "$url" >/dev/null
  local c0 c1 o0 o1 w0 w1 b0 b1 k0 k1 t0 wrk_pid conns
  k0=$(task_ticks "$PROXY_PID")
  c0=$(cpu_ticks "$PROXY_PID") o0=$(cpu_ticks "$ORIGIN_PID") w0=$(child_ticks)
  b0=$(busy_jiffies 1)
  t0=$EPOCHREALTIME
  "${wrk[@]}" -d"${DURATION}s" --latency "$url" >"$T/wrk.out" &
  wrk_pid=$!
  PIDS+=("$wrk_pid")
  sleep "$(awk -v d="$DURATION" 'BEGIN { print d / 2 }')"
  conns=$(worker_conns "$PROXY_PID" "$port" "$n")
  wait "$wrk_pid" || true
  b1=$(busy_jiffies 1)
  c1=$(cpu_ticks "$PROXY_PID") o1=$(cpu_ticks "$ORIGIN_PID") w1=$(child_ticks)
  k1=$(task_ticks "$PROXY_PID")
  local dur
  dur=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
  stop_proxy
  set_affinity "$LOAD_CPU" "$ORIGIN_PID"
  PROXY_WORKERS=1 PROXY_CPUS=$PROXY_CPU
  read -r rps p50 p99 reqs errs < <(parse_wrk "$T/wrk.out")
  # Per thread: ticks over the run, most first; the first N are the workers.
  local shares wsum wmax
  read -r shares wsum wmax < <(
    awk 'NR == FNR { a[$1] = $2; next } { print $2 - a[$1] }' <(echo "$k0") <(echo "$k1") |
      sort -rn | head -n "$n" |
      awk '{ d[NR] = $1; s += $1; if ($1 > m) m = $1 }
        END { for (i = 1; i <= NR; i++) out = out (i > 1 ? "/" : "") (s ? sprintf("%.0f", 100 * d[i] / s) : 0)
              print out, s + 0, m + 0 }')
  local cpu_us proxy_cores others
  cpu_us=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.2f", c / hz * 1e6 / n }')
  proxy_cores=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v s="$dur" 'BEGIN { printf "%.2f", c / hz / s }')
  # Busy time of all cores (softirq included, see busy_jiffies) not charged to
  # the proxy, the origin or wrk: other processes.
  others=$(awk -v b0="$b0" -v b1="$b1" -v ours=$((c1 - c0 + o1 - o0 + w1 - w0)) -v hz="$HZ" -v s="$dur" '
    BEGIN { n = split(b0, x, " "); split(b1, y, " "); for (i = 1; i <= n; i++) busy += y[i] - x[i]
            printf "%.2f", (busy - ours) / hz / s }')
  too_busy "$others" "round $round workers-$n $row: other processes used ${others} cores" && return 3
  tsv "$round" "$row" "$n" "$rps" "$p50" "$p99" "$reqs" "$errs" "$cpu_us" "$proxy_cores" "$shares" \
    "$wsum" "$wmax" "$conns" "$others" "$QUIET" >>"$WORKERS_RAW"
  log "round $round workers-$n $row: $rps req/s cpu ${cpu_us}us/req on ${proxy_cores} cores, worker CPU $shares %, conns $conns, others ${others} cores, errors $errs"
}

IFS=, read -r -a case_list <<<"$CASES"
IFS=, read -r -a row_list <<<"$ROWS"
IFS=, read -r -a tls_row_list <<<"$TLS_ROWS"
IFS=, read -r -a tls_case_list <<<"$TLS_CASES"
IFS=, read -r -a h2_row_list <<<"$H2_ROWS"
IFS=, read -r -a h2_case_list <<<"$H2_CASES"
IFS=, read -r -a workers_row_list <<<"$WORKERS_ROWS"
# Every (case, row) pair of a round, plain ones first, then TLS ones.
plan=()
for case in "${case_list[@]}"; do
  for row in "${row_list[@]}"; do plan+=("$case $row"); done
done
if [[ $TLS == 1 ]]; then
  for case in "${tls_case_list[@]}"; do
    for row in "${tls_row_list[@]}"; do
      [[ $row == direct ]] && continue  # the origin speaks plain HTTP only
      plan+=("$case $row")
    done
  done
fi
if [[ $H2 == 1 ]]; then
  for case in "${h2_case_list[@]}"; do
    for row in "${h2_row_list[@]}"; do
      # The h2 cases' origin speaks HTTP/1.1 only; the gRPC upstreams take h2c.
      [[ $row == direct && $case == h2* ]] && continue
      plan+=("$case $row")
    done
  done
fi
if [[ $WORKERS == 1 ]]; then
  # Each proxy's two runs back to back: their ratio is the figure.
  for row in "${workers_row_list[@]}"; do
    [[ $row == direct ]] && continue
    plan+=("workers-1 $row" "workers-2 $row")
  done
fi
for ((round = 1; round <= ROUNDS; round++)); do
  wait_quiet
  for item in "${plan[@]}"; do
    read -r case row <<<"$item"
    {
      # A run disturbed by other processes is discarded and redone.
      for ((attempt = 1; ; attempt++)); do
        status=0
        if [[ $case == workers-* ]]; then
          run_workers_row "$round" "$row" "$case" || status=$?
        else
          run_row "$round" "$row" "$case" || status=$?
        fi
        ((status == 0)) && break
        ((status != 3)) && exit "$status"
        if ((attempt >= RETRIES)); then
          log "round $round $case $row: still disturbed after $RETRIES attempts; skipped"
          break
        fi
        wait_quiet
      done
    }
  done
done
TLS_RUN=0 H2_RUN=0 UP_PORT=$ORIGIN_PORT UP_PROTO=http1
PROXY_WORKERS=1 PROXY_CPUS=$PROXY_CPU

# --- optional profile ----------------------------------------------------------
PROFILE_TXT=
if [[ $PROFILE == 1 ]]; then
  wait_quiet
  port=$(free_port)
  start_proxy sluice "$port" || exit 1
  url="http://127.0.0.1:$port/small"
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$url" >/dev/null
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$((DURATION + 2))s" "$url" >/dev/null &
  wrk_pid=$!
  PIDS+=("$wrk_pid")
  sleep 1
  perf record -e cpu-clock -F 4999 -g -p "$PROXY_PID" -o "$T/perf.data" -- sleep "$DURATION" \
    >/dev/null 2>&1 || log "perf record failed"
  wait "$wrk_pid" || true
  stop_proxy
  PROFILE_TXT=$BUILD_DIR/bench-profile-$(date +%Y%m%d-%H%M%S).txt
  report() { perf report -i "$T/perf.data" --stdio -g none --no-children --sort "$1" 2>/dev/null |
    grep -v '^#' | grep -v '^$' | sed -e 's/ *$//' -e 's/ *- *- *$//' | cut -c1-180; }
  {
    echo "# sluice under wrk -t1 -c$CONNS, /small: perf record -e cpu-clock, self time"
    echo "## by shared object"
    report dso | head -12 || true
    echo "## by function"
    report sym | head -50 || true
  } >"$PROFILE_TXT"

  # System calls per request, every proxy, same load.
  {
    echo
    echo "# system calls per request (perf stat -e raw_syscalls:sys_enter over wrk -d5s)"
    for row in nginx haproxy sluice; do
      port=$(free_port)
      start_proxy "$row" "$port" || exit 1
      url="http://127.0.0.1:$port/small"
      taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$url" >/dev/null
      pids=$(tree_pids "$PROXY_PID" | paste -sd, -)
      perf stat -e raw_syscalls:sys_enter -p "$pids" -o "$T/pstat.out" -- \
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d5s "$url" >"$T/wrk.out"
      calls=$(awk '/raw_syscalls:sys_enter/ { gsub(/,/, "", $1); print $1 }' "$T/pstat.out")
      reqs=$(awk '/requests in/ { print $1 }' "$T/wrk.out")
      if [[ $row == sluice ]]; then
        perf trace -s -p "$PROXY_PID" -o "$T/ptrace.out" -- \
          taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d3s "$url" >"$T/wrk2.out" 2>/dev/null || true
      fi
      stop_proxy
      awk -v r="$row" -v c="$calls" -v n="$reqs" 'BEGIN { printf "%-8s %6.2f syscalls/request\n", r, c / n }'
    done
    if [[ -s $T/ptrace.out ]]; then
      echo
      echo "# sluice by system call, per request (perf trace -s over wrk -d3s)"
      reqs=$(awk '/requests in/ { print $1 }' "$T/wrk2.out")
      awk -v n="$reqs" '$2 ~ /^[0-9]+$/ && NF >= 8 { printf "%-16s %6.2f calls/request, %5.2f errors/request\n", $1, $2 / n, $3 / n }' \
        "$T/ptrace.out"
    fi
    if [[ $H2 == 1 ]]; then
      echo
      echo "# HTTP/2 (case h2: h2load -c$H2_CONNS -m$H2_STREAMS, 5 s) system calls per request"
      H2_RUN=1
      for row in nginx haproxy sluice; do
        port=$(free_port)
        start_proxy "$row" "$port" || exit 1
        h2_load "$port" "$WARMUP" h2 >/dev/null
        pids=$(tree_pids "$PROXY_PID" | paste -sd, -)
        # Counts until interrupted, so the h2load run of the rows is reused.
        perf stat -e raw_syscalls:sys_enter -p "$pids" -o "$T/pstat.out" &
        perf_pid=$!
        PIDS+=("$perf_pid")
        sleep 0.5  # perf attaches
        read -r _ _ _ reqs _ < <(h2_load "$port" 5 h2)
        kill -INT "$perf_pid" && wait "$perf_pid" || true
        stop_proxy
        calls=$(awk '/raw_syscalls:sys_enter/ { gsub(/,/, "", $1); print $1 }' "$T/pstat.out")
        awk -v r="$row" -v c="$calls" -v n="$reqs" 'BEGIN { printf "%-8s %6.2f syscalls/request\n", r, c / n }'
      done
      H2_RUN=0
    fi
  } >>"$PROFILE_TXT"
  log "profile: $PROFILE_TXT"
fi

# --- route-table micro-benchmark ---------------------------------------------
ROUTER_TXT=$T/router.txt
if [[ $ROUTER == 1 && -x $BUILD_DIR/benchmarks/sluice_router_bench ]]; then
  wait_quiet
  log "route-table micro-benchmark"
  taskset -c "$PROXY_CPU" "$BUILD_DIR/benchmarks/sluice_router_bench" 2>&1 |
    grep -E '^(BM_|Benchmark|-)' >"$ROUTER_TXT" || true
fi

# --- summary ---------------------------------------------------------------
STAMP=$(date +%Y%m%d-%H%M%S)
cp "$RAW" "$BUILD_DIR/bench-$STAMP.tsv"
WORKERS_TSV=
if [[ $WORKERS == 1 ]]; then
  WORKERS_TSV=$BUILD_DIR/bench-$STAMP-workers.tsv
  cp "$WORKERS_RAW" "$WORKERS_TSV"
fi
{
  echo "# sluice benchmark run $STAMP"
  echo
  echo "- sluice: $SLUICE_DESC; $COMMIT_DESC"
  echo "- $(nginx -v 2>&1); $(haproxy -v 2>&1 | head -1); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "- CPU: $(lscpu | awk -F': +' '/Model name/ { print $2 }'), $(nproc) cores; kernel $(uname -r)"
  [[ -n $CASES ]] &&
    echo "- load: wrk -t1 -c$CONNS -d${DURATION}s --latency after ${WARMUP}s warm-up; proxy on CPU $PROXY_CPU, origin + wrk on CPU $LOAD_CPU; $ROUNDS rounds; idle test $IDLE_CONNS connections (small: sluice_idle_conns; tls-keepalive: idle_tls_conns.py)"
  if [[ $TLS == 1 ]]; then
    echo "- TLS rows ($TLS_ROWS; $TLS_CASES), /small, ${TLS_DURATION}s runs after ${TLS_WARMUP}s warm-up, self-signed ECDSA P-256 certificate, TLS 1.3, clients on OpenSSL ($(openssl version | cut -d' ' -f2)); sluice row: sluice_bench_server --tls. tls-handshake: $TLS_CLIENTS concurrent \`openssl s_time -new\` (full handshake, one HTTP/1.0 request per connection; req/s = handshakes/s, no latencies); tls-resume: wrk -t1 -c$CONNS -H 'Connection: close' (a new connection per request, session resumed from the ticket); tls-keepalive: wrk -t1 -c$CONNS"
  fi
  if [[ $H2 == 1 ]]; then
    echo "- HTTP/2 rows ($H2_ROWS; $H2_CASES), $(h2load --version | head -1), one thread on CPU $LOAD_CPU, h2c with prior knowledge, ${DURATION}s runs after ${WARMUP}s warm-up; p50/p99 from h2load's per-request log. h2: -c$H2_CONNS -m$H2_STREAMS GET /small, HTTP/1.1 to the origin (nginx: listen http2; HAProxy: bind proto h2); h2-1stream: -c$CONNS -m1; grpc: -c$H2_CONNS -m$H2_STREAMS POSTs of one 7-byte gRPC message (12 bytes framed) (content-type application/grpc, te: trailers), h2c to an nginx answering a gRPC-shaped reply (message + grpc-status trailer; nginx: grpc_pass, HAProxy: server proto h2, sluice: UpstreamProtocol::http2 / ServiceEntry port protocol GRPC); direct = h2load to that upstream. grpc-unary: python3-grpcio ($("$PY" -c 'import grpc; print(grpc.__version__)' 2>/dev/null)) client, $GRPC_CALLS unary calls one at a time after a 200-call warm-up run, to a python3-grpcio server (grpc_unary.py) on CPU $LOAD_CPU; req/s = calls/s"
  fi
  if [[ $WORKERS == 1 ]]; then
    echo "- workers case ($WORKERS_ROWS), /small: each proxy with 1 and with 2 workers (nginx worker_processes, sluice --workers, HAProxy nbthread), run back to back, $ROUNDS rounds; origin, proxy and wrk -t$WORKERS_WRK_THREADS -c$CONNS -d${DURATION}s (after ${WARMUP}s warm-up) all unpinned (CPUs $WORKERS_CPUS); worker CPU from /proc/<pid>/task/*/stat, connections per worker from each worker's epoll instance at mid-run"
  fi
  echo
  "$PY" "$HERE/summarize.py" "$RAW" ${WORKERS_TSV:+"$WORKERS_TSV"}
  if [[ -s $ROUTER_TXT ]]; then
    echo
    echo "## Route table (sluice_router_bench, pinned to CPU $PROXY_CPU)"
    echo
    echo '```'
    cat "$ROUTER_TXT"
    echo '```'
  fi
} | tee "$BUILD_DIR/bench-$STAMP.md"
log "raw rows: $BUILD_DIR/bench-$STAMP.tsv${WORKERS_TSV:+ and $WORKERS_TSV}; summary: $BUILD_DIR/bench-$STAMP.md"
