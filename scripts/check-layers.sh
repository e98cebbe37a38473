#!/usr/bin/env bash
# Fails when a file under lib/ or include/ includes a header of a layer its
# own layer may not depend on (issue 11, item 3: "Layers without back-edges").
#
# Usage: scripts/check-layers.sh [source-dir]      (default: this repository)
#
# The layering (the design brief's "Layers and the path of a request" and
# the README's "Architecture"). A layer is a folder: lib/<folder>, or
# "sluice" for include/sluice (the public API). Every layer may include its
# own headers and the public API; besides that, only what its row lists.
# Lowest layer first: a row names only rows above it.
#
#   sluice    include/sluice   public value types and handles: nothing from lib/
#   http      lib/http         HTTP/1 codec and text helpers, no sockets
#   http2     lib/http2        HTTP/2 codecs over nghttp2, no sockets -> http
#   net       lib/net          the per-worker loop: connection slots and
#                              deadlines, clocks, RNG, I/O buffers
#   discovery lib/discovery    endpoint sources (DNS) on threads of their own;
#                              they reach a Gateway only through the public API
#   tls       lib/tls          BoringSSL contexts, SNI, ClientHello, origination
#                                                                    -> http
#   policy    lib/policy       per-route decisions, no I/O           -> http
#   security  lib/security     JWT authentication, authorization, rate limits
#                              (local buckets, global on Redis with its own
#                              client socket)                        -> http net
#   routing   lib/routing      match table; compiles a route's policy -> http policy
#   telemetry lib/telemetry    metrics (per-worker series, Prometheus text),
#                              access-log formats             -> http
#   upstream  lib/upstream     pools, balancers, health, outlier detection, the
#                              upstream-connection layer (HTTP/2 multiplexed);
#                              takes a narrow per-worker context, never the Worker
#                                                                    -> http http2 tls net
#   config    lib/config       specs -> compiled Snapshot, no I/O    -> http tls policy routing upstream
#                                                                       security telemetry
#   proxy     lib/proxy        downstream session, upstream exchange,
#                              passthrough relay; sees the worker as a
#                              SessionHost        -> http tls net policy routing upstream config
#                                                                       security telemetry
#   admin     lib/admin        admin endpoints and the traffic graph on a
#                              thread of their own; they read a Gateway only
#                              through the public API         -> http net telemetry
#   runtime   lib/runtime      workers, listeners (TLS accept), publication
#                                                  -> everything in lib/ but istio
#   istio     lib/istio        YAML -> specs (a separate library)    -> http policy config security
#                                                                       telemetry
#             (wire checks and retry_on parsing at load, so errors carry the
#             YAML resource's name; never the runtime or the data path)
#
# Nothing in lib/ includes istio/ (only it and the example know YAML), and
# include/sluice includes no lib/ header (the public headers are the ABI).
# A folder missing from the table fails the check: place it first (DESIGN.md
# plans telemetry/).
#
# Back-edges that exist today and are being removed are listed in KNOWN
# below, one "file included-header" pair each with the issue item; they are
# printed as warnings. Any other forbidden include fails, as does a quoted
# include that names no layer. A KNOWN entry that no longer occurs is
# reported so it can be deleted.

set -euo pipefail

root=${1:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"}
cd "$root"

declare -A ALLOWED=(
  [sluice]=""
  [http]=""
  [http2]="http"
  [net]=""
  [discovery]=""
  [tls]="http"
  [policy]="http"
  [security]="http net"
  [routing]="http policy"
  [telemetry]="http"
  [upstream]="http http2 tls net"
  [config]="http tls policy routing upstream security telemetry"
  [proxy]="http http2 tls net policy routing upstream config security telemetry"
  [admin]="http net telemetry"
  [runtime]="http http2 tls net policy routing upstream config proxy security telemetry"
  [istio]="http policy config security telemetry"
)

# Known back-edges, to be removed (issue 11, item 3). Keep it short.
KNOWN=(
)

declare -A known_seen=()
for k in "${KNOWN[@]}"; do known_seen[$k]=0; done

# Layer of a source file: include/sluice/... -> sluice, lib/<x>/... -> x.
layer_of_file() {
  case $1 in
    include/sluice/*) echo sluice ;;
    lib/*/*) local rest=${1#lib/}; echo "${rest%%/*}" ;;
    *) echo "${1%/*}" ;;  # no layer: its folder, for the message
  esac
}

# Layer of a quoted include as written in `file`, looked up as the compiler
# does: next to the including file first, then under lib/ and include/. A
# header that does not exist (yet) still counts for the layer it names.
# Empty when it names no layer.
layer_of_include() {
  local file=$1 inc=$2 first=${2%%/*} dir
  if [[ -f ${file%/*}/$inc ]]; then
    layer_of_file "$(realpath -m --relative-to=. "${file%/*}/$inc")"
    return
  fi
  for dir in lib include; do
    if [[ -f $dir/$inc ]]; then
      if [[ $inc == *..* ]]; then inc=$(realpath -m --relative-to=$dir "$dir/$inc"); fi
      layer_of_file "$dir/$inc"
      return
    fi
  done
  if [[ $inc == */* && ( $first == sluice || -n ${ALLOWED[$first]+x} ) ]]; then echo "$first"; fi
}

errors=0
warnings=0
while IFS= read -r hit; do
  # hit: path:line:text
  file=${hit%%:*}
  rest=${hit#*:}
  line=${rest%%:*}
  text=${rest#*:}
  [[ $text =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]] || continue
  inc=${BASH_REMATCH[1]}

  from=$(layer_of_file "$file")
  if [[ -z ${ALLOWED[$from]+x} ]]; then
    echo "error: $file:$line: folder \"$from\" is not in the layer table of scripts/check-layers.sh; add it"
    errors=$((errors + 1))
    continue
  fi
  to=$(layer_of_include "$file" "$inc")
  if [[ -z $to ]]; then
    echo "error: $file:$line: \"$inc\" names no layer (use <...> for headers outside the tree)"
    errors=$((errors + 1))
    continue
  fi
  if [[ $to == "$from" || $to == sluice || " ${ALLOWED[$from]} " == *" $to "* ]]; then
    continue
  fi
  key="$file $inc"
  if [[ -n ${known_seen[$key]+x} ]]; then
    known_seen[$key]=1
    echo "warning: $file:$line: $from includes $to (\"$inc\"): known back-edge, issue 11 item 3"
    warnings=$((warnings + 1))
  else
    if [[ $from == sluice ]]; then
      allowed="only sluice/ (the public API includes nothing from lib/)"
    else
      allowed="${ALLOWED[$from]:+${ALLOWED[$from]} }sluice/ and itself"
    fi
    echo "error: $file:$line: $from may not include $to (\"$inc\"); $from may include $allowed"
    errors=$((errors + 1))
  fi
done < <(grep -rnE --include='*.hpp' --include='*.h' --include='*.cpp' --include='*.cc' \
           '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' lib include | sort -t: -k1,1 -k2,2n)

for k in "${KNOWN[@]}"; do
  if [[ ${known_seen[$k]} == 0 ]]; then
    echo "note: known back-edge \"$k\" no longer occurs: delete it from KNOWN in scripts/check-layers.sh"
  fi
done

if ((errors > 0)); then
  echo "check-layers: $errors include(s) against the layering ($warnings known)"
  exit 1
fi
echo "check-layers: ok ($warnings known back-edge(s) left)"
