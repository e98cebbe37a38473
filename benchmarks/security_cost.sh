#!/usr/bin/env bash
# Cost per request of the security features (issue 12), each next to the
# same route without it, in the same run: sluice-ingress serves one Istio
# YAML per variant in front of one nginx origin.
#
#   benchmarks/security_cost.sh [--cases LIST] [--requests N] [--warmup N]
#                               [--conns C] [--rounds N] [--duration S]
#                               [--no-instr] [--no-wall] [--rev REV]
#                               [--ingress PATH]
#
# Cases (--cases, default all four):
#   jwt-rs256  RequestAuthentication with an inline JWKS (RSA 2048); every
#              request carries a valid RS256 token (`Authorization: Bearer`)
#   jwt-es256  the same with a P-256 key and an ES256 token
#   authz20    an ALLOW AuthorizationPolicy of 20 rules (paths, methods and a
#              request.headers condition each); only the last one matches
#   ratelimit  a global limit on Redis: the rate-limit task's two EnvoyFilters
#              (envoy.filters.http.ratelimit, VIRTUAL_HOST rate_limits with a
#              generic_key action), sluice-ingress --rate-limit-config FILE
#              --redis 127.0.0.1:PORT, a limit far above what the run sends.
#              Skipped with a message while sluice-ingress lacks those flags.
# Each case runs twice: "without" (the route alone) and "with" (the route and
# the policy); both send the same request, token and headers included.
#
# Two measures:
#   - instructions per request (deterministic): sluice-ingress under
#     valgrind's callgrind, a fixed sequence from request_client.py
#     (--requests after --warmup, keep-alive over --conns connections, one
#     request outstanding at a time), counters zeroed after the warm-up.
#   - wall clock (noisy on a shared machine): wrk -t1 -c64 for --duration s
#     after a 1 s warm-up, --rounds rounds with the variants interleaved;
#     req/s and the proxy's CPU time per request (/proc utime+stime). Proxy
#     pinned to CPU 1; origin, Redis and wrk to CPU 0, as in run.sh.
# Before measuring, each variant is checked: the policy refuses a request it
# must refuse (a tampered token: 401; another tenant: 403) and the route
# without it lets that request through; the Redis variant must send commands
# to Redis. Keys and tokens are made at run time (sluice_bench_jwt).
#
# --rev builds the commit REV (git archive into build-security-<commit>/src,
# this checkout's benchmarks/ copied in); otherwise the working tree, in
# build-security/. --ingress PATH measures that sluice-ingress binary instead
# (a build of another tree; the output names it). Everything listens on
# 127.0.0.1, on free ports, from a mktemp -d directory removed at the end;
# every process started is killed.
# Prints Markdown tables.
set -euo pipefail

CASES=${CASES:-jwt-rs256,jwt-es256,authz20,ratelimit}
REQUESTS=${REQUESTS:-5000}
WARMUP=${WARMUP:-500}
CONNS=${CONNS:-8}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WALL_WARMUP=${WALL_WARMUP:-1}
WRK_CONNS=${WRK_CONNS:-64}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
INSTR=${INSTR:-1}
WALL=${WALL:-1}
REV=${REV:-}
INGRESS=${INGRESS:-}
while [[ $# -gt 0 ]]; do
  case $1 in
    --cases) CASES=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --no-instr) INSTR=0; shift ;;
    --no-wall) WALL=0; shift ;;
    --rev) REV=$2; shift 2 ;;
    --ingress) INGRESS=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "security_cost.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PATH=$PATH:/usr/sbin
need=(nginx python3 cmake ninja curl taskset)
[[ $INSTR == 1 ]] && need+=(valgrind callgrind_control)
[[ $WALL == 1 ]] && need+=(wrk)
[[ ,$CASES, == *,ratelimit,* ]] && need+=(redis-server redis-cli)
for tool in "${need[@]}"; do
  command -v "$tool" >/dev/null || { echo "security_cost.sh: $tool not found" >&2; exit 1; }
done
log() { echo "[security $(date +%H:%M:%S)] $*" >&2; }

# --- build --------------------------------------------------------------------
if [[ -n $REV ]]; then
  COMMIT=$(git -C "$ROOT" rev-parse --short "$REV")
  BUILD_DIR=$ROOT/build-security-$COMMIT
  SRC=$BUILD_DIR/src
  if [[ $(cat "$SRC/.security-rev" 2>/dev/null) != "$COMMIT" ]]; then
    rm -rf "$SRC" && mkdir -p "$SRC"
    git -C "$ROOT" archive "$COMMIT" | tar -x -C "$SRC"
    echo "$COMMIT" >"$SRC/.security-rev"
  fi
  # The harness comes from this checkout, so every commit runs the same one.
  mkdir -p "$SRC/benchmarks"
  cp -p "$HERE"/{CMakeLists.txt,*.cpp,*.c} "$SRC/benchmarks/"
  grep -q SLUICE_BUILD_BENCHMARKS "$SRC/CMakeLists.txt" ||
    printf '\noption(SLUICE_BUILD_BENCHMARKS "" OFF)\nif(SLUICE_BUILD_BENCHMARKS)\n  add_subdirectory(benchmarks)\nendif()\n' \
      >>"$SRC/CMakeLists.txt"
  SOURCE_DESC="commit $COMMIT (git archive)"
else
  BUILD_DIR=$ROOT/build-security
  SRC=$ROOT
  SOURCE_DESC="working tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  git -C "$ROOT" diff --quiet HEAD -- lib include examples 2>/dev/null ||
    SOURCE_DESC+=" + uncommitted changes in lib/include/examples"
fi
launcher=()
command -v ccache >/dev/null &&
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
log "building sluice-ingress and sluice_bench_jwt (Release) from $SOURCE_DESC"
cmake -S "$SRC" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_BENCHMARKS=ON \
  -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_EXAMPLES=ON "${launcher[@]}" >/dev/null
if [[ -n $INGRESS ]]; then
  INGRESS=$(realpath "$INGRESS")
  SOURCE_DESC="$INGRESS (given with --ingress)"
  ninja -C "$BUILD_DIR" -j2 sluice_bench_jwt >/dev/null
else
  ninja -C "$BUILD_DIR" -j2 sluice-ingress sluice_bench_jwt >/dev/null
  INGRESS=$BUILD_DIR/examples/ingress/sluice-ingress
fi
JWT_TOOL=$BUILD_DIR/benchmarks/sluice_bench_jwt

# --- scratch space, cleanup -------------------------------------------------------
T=$(mktemp -d /tmp/sluice-security.XXXXXX)
chmod 755 "$T"  # nginx workers run as nobody when started by root
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {  # $1 port: until it accepts (valgrind starts slowly), at most 60 s
  for _ in $(seq 1 600); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# --- cases ------------------------------------------------------------------------
IFS=, read -r -a case_list <<<"$CASES"
RL_FLAGS=()
REDIS_PORT=
if [[ ,$CASES, == *,ratelimit,* ]]; then
  if "$INGRESS" --help 2>&1 | grep -q -- --rate-limit-config &&
    "$INGRESS" --help 2>&1 | grep -q -- --redis; then
    REDIS_PORT=$(free_port)
    mkdir -p "$T/redis"
    taskset -c "$LOAD_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$T/redis" \
      --save '' --appendonly no --daemonize no >"$T/redis/out.log" 2>&1 &
    PIDS+=($!)
    wait_port "$REDIS_PORT" || { echo "redis-server did not start" >&2; cat "$T/redis/out.log" >&2; exit 1; }
    # The reference rate-limit service's format: one generic_key descriptor,
    # a limit no run comes near, so every request goes to Redis and passes.
    cat >"$T/ratelimit-config.yaml" <<EOF
domain: ratelimit
descriptors:
  - key: generic_key
    value: bench
    rate_limit:
      unit: hour
      requests_per_unit: 1000000000
EOF
    RL_FLAGS=(--rate-limit-config "$T/ratelimit-config.yaml" --redis "127.0.0.1:$REDIS_PORT")
  else
    log "ratelimit: skipped: this sluice-ingress has no --rate-limit-config / --redis" \
      "(the rate-limit wiring of issue 12 is not in $SOURCE_DESC yet)"
    kept=()
    for c in "${case_list[@]}"; do [[ $c != ratelimit ]] && kept+=("$c"); done
    case_list=("${kept[@]}")
  fi
fi
[[ ${#case_list[@]} -gt 0 ]] || { log "no case left to run"; exit 0; }

ISSUER=bench-issuer.sluice.local
for alg in RS256 ES256; do
  "$JWT_TOOL" "$alg" "$ISSUER" bench-user >"$T/jwt-$alg.txt"
done
jwks_of() { sed -n 1p "$T/jwt-$1.txt"; }
token_of() { sed -n 2p "$T/jwt-$1.txt"; }
# The same token with one signature character changed: must be refused.
tampered_of() {
  local t
  t=$(token_of "$1")
  local i=$((${#t} - 8)) c=${t:${#t}-8:1} r=A
  [[ $c == A ]] && r=B
  echo "${t:0:i}$r${t:i+1}"
}

# The request every run of case $1 sends (one header per line).
case_headers() {
  case $1 in
    jwt-rs256) echo "Authorization: Bearer $(token_of RS256)" ;;
    jwt-es256) echo "Authorization: Bearer $(token_of ES256)" ;;
    authz20) echo "x-tenant: tenant-19" ;;
    ratelimit) ;;
  esac
}
# A request the policy of case $1 refuses ("status header"), or nothing.
case_refused() {
  case $1 in
    jwt-rs256) echo "401 Authorization: Bearer $(tampered_of RS256)" ;;
    jwt-es256) echo "401 Authorization: Bearer $(tampered_of ES256)" ;;
    authz20) echo "403 x-tenant: tenant-20" ;;
    ratelimit) ;;
  esac
}

# Writes the YAML of case $1, variant $2 (without|with), listening on $3.
write_yaml() {
  local kase=$1 variant=$2 port=$3 out=$T/$1-$2.yaml
  cat >"$out" <<EOF
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bench-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: $port
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
          number: $ORIGIN_PORT
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
  - number: $ORIGIN_PORT
    name: http
    protocol: HTTP
  endpoints:
  - address: 127.0.0.1
EOF
  [[ $variant == with ]] || { echo "$out"; return; }
  case $kase in
    jwt-rs256 | jwt-es256)
      local alg=RS256
      [[ $kase == jwt-es256 ]] && alg=ES256
      cat >>"$out" <<EOF
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: bench-jwt
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  jwtRules:
  - issuer: "$ISSUER"
    jwks: '$(jwks_of $alg)'
EOF
      ;;
    authz20)
      # Every rule passes its paths and methods and is decided by its header
      # condition, so each of the 20 is evaluated in full; the last matches.
      cat >>"$out" <<EOF
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: bench-20-rules
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  action: ALLOW
  rules:
EOF
      local i
      for ((i = 0; i < 20; i++)); do
        cat >>"$out" <<EOF
  - to:
    - operation:
        methods: ["GET", "HEAD"]
        paths: ["/small", "/api/tenant-$i/*"]
    when:
    - key: request.headers[x-tenant]
      values: ["tenant-$i"]
EOF
      done
      ;;
    ratelimit)
      # The shapes of Istio's "Enabling Rate Limits using Envoy" task, with a
      # generic_key action instead of the :path one.
      cat >>"$out" <<EOF
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-ratelimit
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: GATEWAY
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
              subFilter:
                name: "envoy.filters.http.router"
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.ratelimit
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
            domain: ratelimit
            failure_mode_deny: true
            timeout: 10s
            rate_limit_service:
              grpc_service:
                envoy_grpc:
                  cluster_name: outbound|8081||ratelimit.default.svc.cluster.local
                  authority: ratelimit.default.svc.cluster.local
              transport_api_version: V3
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-ratelimit-svc
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  configPatches:
    - applyTo: VIRTUAL_HOST
      match:
        context: GATEWAY
        routeConfiguration:
          vhost:
            name: ""
            route:
              action: ANY
      patch:
        operation: MERGE
        value:
          rate_limits:
            - actions:
              - generic_key:
                  descriptor_value: bench
EOF
      ;;
  esac
  echo "$out"
}

# sluice-ingress for case $1 variant $2 on port $3; the command in CMD.
ingress_cmd() {
  local yaml
  yaml=$(write_yaml "$1" "$2" "$3")
  CMD=("$INGRESS" --config "$yaml" --workers 1 --bind 127.0.0.1 --no-watch)
  # failure_mode_deny is on, so a variant with the filter and no Redis fails
  # its requests instead of measuring nothing.
  [[ $1 == ratelimit && $2 == with ]] && CMD+=("${RL_FLAGS[@]}")
  return 0
}

redis_commands() {
  redis-cli -p "$REDIS_PORT" info stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" { print $2 }'
}

# Status of GET /small on port $1 with the header lines of $2.
status_of() {
  local args=() h
  while IFS= read -r h; do [[ -n $h ]] && args+=(-H "$h"); done <<<"$2"
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H 'Host: origin.bench.local' "${args[@]}" \
    "http://127.0.0.1:$1/small"
}

# Checks a running variant: the request of the case passes, the refused one is
# refused with the policy and passes without it; with the global limit the
# request reaches Redis, without it it does not.
check_variant() {
  local kase=$1 variant=$2 port=$3 st want refused r0 r1
  [[ -n $REDIS_PORT ]] && r0=$(redis_commands)
  st=$(status_of "$port" "$(case_headers "$kase")")
  [[ $st == 200 ]] || { echo "$kase/$variant: the benchmark request got $st, not 200" >&2; return 1; }
  if [[ -n $REDIS_PORT ]]; then
    # One INFO of ours is counted between the two readings.
    r1=$(($(redis_commands) - 1))
    if [[ $kase == ratelimit && $variant == with ]]; then
      ((r1 > r0)) || { echo "$kase/$variant: the request sent no command to Redis" >&2; return 1; }
    elif ((r1 != r0)); then
      echo "$kase/$variant: the request sent $((r1 - r0)) commands to Redis" >&2
      return 1
    fi
  fi
  refused=$(case_refused "$kase")
  [[ -n $refused ]] || return 0
  want=${refused%% *}
  [[ $variant == with ]] || want=200
  st=$(status_of "$port" "${refused#* }")
  [[ $st == "$want" ]] || { echo "$kase/$variant: the refused request got $st, not $want" >&2; return 1; }
}

# --- origin: plain nginx, never measured ----------------------------------------------
ORIGIN_PORT=$(free_port)
mkdir -p "$T/origin/www" "$T/origin/tmp"
printf 'Hello from the sluice benchmark origin; 64-byte response body.\n' >"$T/origin/www/small"
cat >"$T/origin/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $T/origin/nginx.pid;
error_log $T/origin/error.log crit;
worker_rlimit_nofile 20000;
events { worker_connections 16000; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  client_body_temp_path $T/origin/tmp;
  proxy_temp_path $T/origin/tmp;
  fastcgi_temp_path $T/origin/tmp;
  uwsgi_temp_path $T/origin/tmp;
  scgi_temp_path $T/origin/tmp;
  server { listen 127.0.0.1:$ORIGIN_PORT backlog=4096; root $T/origin/www; }
}
EOF
taskset -c "$LOAD_CPU" nginx -p "$T/origin" -c "$T/origin/nginx.conf" >"$T/origin/out.log" 2>&1 &
PIDS+=($!)
wait_port "$ORIGIN_PORT" || { echo "origin did not start" >&2; exit 1; }

# --- instructions per request (callgrind) --------------------------------------------------
declare -A IR REDIS_PER_REQ FLOOR_IR FLOOR_US
if [[ $INSTR == 1 ]]; then
  for kase in "${case_list[@]}"; do
    for variant in without with; do
      port=$(free_port)
      ingress_cmd "$kase" "$variant" "$port"
      out=$T/$kase-$variant.callgrind
      valgrind --tool=callgrind --callgrind-out-file="$out" "${CMD[@]}" >"$T/$kase-$variant.log" 2>&1 &
      pid=$!
      PIDS+=($pid)
      wait_port "$port" || { echo "$kase/$variant did not start" >&2; cat "$T/$kase-$variant.log" >&2; exit 1; }
      check_variant "$kase" "$variant" "$port"
      mapfile -t headers < <(case_headers "$kase")
      python3 "$HERE/request_client.py" "$port" "$WARMUP" "$CONNS" "${headers[@]}" >/dev/null
      [[ -n $REDIS_PORT ]] && r0=$(redis_commands)
      callgrind_control -z "$pid" >/dev/null 2>&1
      python3 "$HERE/request_client.py" "$port" "$REQUESTS" "$CONNS" "${headers[@]}" >/dev/null
      callgrind_control -d "$pid" >/dev/null 2>&1
      if [[ -n $REDIS_PORT ]]; then
        r1=$(redis_commands)
        # One INFO call of ours is in the difference.
        REDIS_PER_REQ[$kase-$variant]=$(python3 -c "print(f'{($r1 - $r0 - 1) / $REQUESTS:.2f}')")
      fi
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      # The dump after zeroing holds exactly the measured requests. Its
      # `summary:` line is the total (callgrind_annotate's PROGRAM TOTALS);
      # `totals:` repeats it, so only one of the two is counted.
      compgen -G "$out.*" >/dev/null || { echo "$kase/$variant: no callgrind dump" >&2; exit 1; }
      IR[$kase-$variant]=$(cat "$out".* | awk '/^summary:/ {s += $2} END {printf "%.0f", s}')
      rm -f "$out" "$out".*
      log "$kase/$variant: $((IR[$kase-$variant] / REQUESTS)) instructions/request"
    done
    if [[ $kase == jwt-* ]]; then
      # BoringSSL's own check of one token (SHA-256 + RSA_verify or
      # ECDSA_do_verify, key parsed once): the floor under sluice's figure.
      alg=${kase#jwt-}
      alg=${alg^^}
      n=50
      valgrind --tool=callgrind --toggle-collect=bench_verify_tokens \
        --callgrind-out-file="$T/floor.callgrind" "$JWT_TOOL" "$alg" "$ISSUER" bench-user \
        --verify "$n" >/dev/null 2>"$T/floor.log" ||
        { echo "sluice_bench_jwt --verify failed" >&2; cat "$T/floor.log" >&2; exit 1; }
      FLOOR_IR[$kase]=$(awk -v n="$n" '/^summary:/ {s += $2} END {printf "%.0f", s / n}' "$T/floor.callgrind")
      rm -f "$T/floor.callgrind"
    fi
    if [[ $kase == ratelimit ]] &&
      ! python3 -c "import sys; sys.exit(not ${REDIS_PER_REQ[ratelimit-with]} >= 1)"; then
      echo "ratelimit/with: ${REDIS_PER_REQ[ratelimit-with]} Redis commands per request: the limit is not applied" >&2
      exit 1
    fi
  done
fi

# --- wall clock (wrk) ---------------------------------------------------------------------
HZ=$(getconf CLK_TCK)
cpu_ticks() {  # utime+stime of process $1, all threads
  local stat
  stat=$(cat /proc/"$1"/stat 2>/dev/null) || { echo 0; return; }
  stat=${stat##*) }
  set -- $stat
  echo $((${12} + ${13}))
}
busy_jiffies() {  # busy jiffies of CPU $1 (softirq left out, as in run.sh)
  awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $9 }' /proc/stat
}
RAW=$T/wall.tsv
: >"$RAW"
if [[ $WALL == 1 ]]; then
  for ((round = 1; round <= ROUNDS; round++)); do
    for kase in "${case_list[@]}"; do
      for variant in without with; do
        port=$(free_port)
        ingress_cmd "$kase" "$variant" "$port"
        taskset -c "$PROXY_CPU" "${CMD[@]}" >"$T/$kase-$variant.wall.log" 2>&1 &
        pid=$!
        PIDS+=($pid)
        wait_port "$port" || { echo "$kase/$variant did not start" >&2; cat "$T/$kase-$variant.wall.log" >&2; exit 1; }
        check_variant "$kase" "$variant" "$port"
        wrk_h=()
        while IFS= read -r h; do [[ -n $h ]] && wrk_h+=(-H "$h"); done < <(case_headers "$kase")
        url=http://127.0.0.1:$port/small
        taskset -c "$LOAD_CPU" wrk -t1 -c"$WRK_CONNS" -d"${WALL_WARMUP}s" "${wrk_h[@]}" "$url" >/dev/null
        c0=$(cpu_ticks "$pid")
        b0=$(busy_jiffies "$PROXY_CPU")
        taskset -c "$LOAD_CPU" wrk -t1 -c"$WRK_CONNS" -d"${DURATION}s" "${wrk_h[@]}" "$url" >"$T/wrk.out"
        b1=$(busy_jiffies "$PROXY_CPU")
        c1=$(cpu_ticks "$pid")
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        read -r rps reqs errs < <(awk '/Requests\/sec:/ { r = $2 } /requests in/ { n = $1 }
          /Non-2xx/ { e += $NF } /Socket errors/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
          END { printf "%s %s %d\n", r, n, e }' "$T/wrk.out")
        cpu_us=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.2f", c / hz * 1e6 / n }')
        # CPU time on the proxy's core that other processes took.
        others=$(awk -v b=$((b1 - b0)) -v c=$((c1 - c0)) -v hz="$HZ" -v s="$DURATION" \
          'BEGIN { printf "%.2f", (b - c) / hz / s }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$kase" "$variant" "$rps" "$cpu_us" "$errs" \
          "$others" >>"$RAW"
        log "round $round $kase/$variant: $rps req/s, ${cpu_us} us CPU/request, $errs errors," \
          "others on the proxy core $others"
      done
      if [[ $kase == jwt-* ]]; then
        alg=${kase#jwt-}
        floor=$(taskset -c "$PROXY_CPU" "$JWT_TOOL" "${alg^^}" "$ISSUER" bench-user --verify 1000 |
          awk '$1 == "verify_cpu_us" { print $2 }')
        FLOOR_US[$kase]+="$floor "
        log "round $round $kase: BoringSSL alone ${floor} us CPU per token"
      fi
    done
  done
fi

# --- summary ------------------------------------------------------------------------------
echo "sluice-ingress --workers 1 from $SOURCE_DESC; $(lscpu | awk -F': +' '/Model name/ { print $2 }')," \
  "$(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"
if [[ $INSTR == 1 ]]; then
  echo
  echo "Instructions per request (callgrind; $REQUESTS GET /small after $WARMUP warm-up," \
    "keep-alive over $CONNS connections; valgrind $(valgrind --version | sed 's/valgrind-//')):"
  echo
  echo "| case | without | with | added per request | added | BoringSSL alone | added beyond it |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for kase in "${case_list[@]}"; do
    python3 -c "
a, b, n, f = ${IR[$kase-without]}, ${IR[$kase-with]}, $REQUESTS, ${FLOOR_IR[$kase]:-None}
floor = '-' if f is None else f'{f:,}'
beyond = '-' if f is None else f'{(b - a) / n - f:+,.0f}'
print(f'| $kase | {a / n:,.0f} | {b / n:,.0f} | {(b - a) / n:+,.0f} | {(b - a) / a * 100:+.1f} % | {floor} | {beyond} |')"
  done
  [[ -n ${REDIS_PER_REQ[ratelimit-with]:-} ]] &&
    echo && echo "Redis commands per request with the global limit: ${REDIS_PER_REQ[ratelimit-with]}"
fi
if [[ $WALL == 1 ]]; then
  echo
  echo "Wall clock (wrk -t1 -c$WRK_CONNS -d${DURATION}s after ${WALL_WARMUP}s, $ROUNDS rounds" \
    "interleaved, proxy on CPU $PROXY_CPU; median (min-max)):"
  echo
  floors=""
  for kase in "${!FLOOR_US[@]}"; do floors+="$kase=${FLOOR_US[$kase]% };"; done
  python3 - "$RAW" "$floors" <<'EOF'
import statistics, sys
floors = {}
for item in filter(None, sys.argv[2].split(";")):
    case, _, values = item.partition("=")
    floors[case] = [float(v) for v in values.split()]
rows = {}
for line in open(sys.argv[1]):
    rnd, case, variant, rps, cpu, errs, others = line.split("\t")
    rows.setdefault((case, variant), []).append((float(rps), float(cpu), int(errs), float(others)))
def fmt(vals, f):
    return f"{f(statistics.median(vals))} ({f(min(vals))}-{f(max(vals))})"
print("| case | req/s without | req/s with | CPU us/req without | CPU us/req with | added CPU us/req | BoringSSL alone (us) | errors | others on proxy core |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for case in dict.fromkeys(c for c, _ in rows):
    a, b = rows[(case, "without")], rows[(case, "with")]
    added = [y[1] - x[1] for x, y in zip(a, b)]  # per round: the pair ran back to back
    print(f"| {case} | {fmt([x[0] for x in a], lambda v: f'{v:,.0f}')} "
          f"| {fmt([x[0] for x in b], lambda v: f'{v:,.0f}')} "
          f"| {fmt([x[1] for x in a], lambda v: f'{v:.2f}')} "
          f"| {fmt([x[1] for x in b], lambda v: f'{v:.2f}')} "
          f"| {fmt(added, lambda v: f'{v:+.2f}')} "
          f"| {fmt(floors[case], lambda v: f'{v:.2f}') if case in floors else '-'} "
          f"| {sum(x[2] for x in a + b)} "
          f"| {fmt([x[3] for x in a + b], lambda v: f'{v:.2f}')} |")
EOF
fi
