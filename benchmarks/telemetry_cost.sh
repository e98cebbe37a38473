#!/usr/bin/env bash
# What telemetry costs per request (issue 13): instructions per request of
# sluice_bench_server under callgrind (benchmarks/instructions.sh, the same
# fixed request sequence for every row) with
#   bare                     --metrics off
#   metrics                  istio_* series recorded (the default)
#   metrics + access log     Istio's default TEXT line to a file
#   metrics + log + 1% trace spans sampled at 1%, exported as OTLP JSON to a
#                            collector stub on 127.0.0.1 (python, answers 200)
# and nginx with its access log off and on, for reference.
#
#   benchmarks/telemetry_cost.sh [--requests N] [--warmup N] [--conns C]
#
# Prints one Markdown table.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ARGS=("$@")

COLLECTOR_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
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
COLLECTOR=$!
trap 'kill $COLLECTOR 2>/dev/null || true' EXIT

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
  "--access-log @T@/access.log --trace-sampling 1 --otlp-endpoint http://127.0.0.1:$COLLECTOR_PORT/v1/traces"
"$HERE/instructions.sh" --rows nginx --no-header "${ARGS[@]}"
"$HERE/instructions.sh" --rows nginx --nginx-access-log --no-header "${ARGS[@]}"
