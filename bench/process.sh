#!/usr/bin/env bash
# Python process-function benchmark on this machine, in one run:
#   - cold start (scale from zero -> first response, through the HTTP route) next to a bare
#     `/usr/bin/python3 -c 'import app'` in the same code directory (hyperfine);
#   - warm invoke latency p50/p99 at 1 connection (wrk) and its overhead over an in-process call
#     of the same handler (timeit): end to end, beyond a bare HTTP round trip to the same server
#     (a 404), and inside the platform (the invocation records' duration);
#   - throughput with N concurrent connections (sandboxes scale up to max_concurrency).
# Targets: cold start <= 1.3x the bare import; warm overhead <= 200 us at p50.
# Needs: wrk, hyperfine, curl (apt). Usage: bench/process.sh [DURATION_SECONDS] [CONNECTIONS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dur=${1:-10}
conns=${2:-4}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

for tool in wrk hyperfine curl; do
  command -v "$tool" >/dev/null || { echo "install $tool (apt-get install -y $tool)" >&2; exit 1; }
done
# NIMBUS_BIN: measure that binary instead (e.g. an earlier release, for before/after).
if [ -z "${NIMBUS_BIN:-}" ]; then (cd "$root" && cargo build --release -q -p nimbus); fi
nimbus="${NIMBUS_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/nimbus}"
app="$root/examples/python-hello"
url=http://127.0.0.1:18811

"$nimbus" up --data-dir "$work/data" --listen 127.0.0.1:18811 --keep-alive 1s \
  --deploy "$app" >/dev/null 2>"$work/server.log" & pids+=($!)
for _ in $(seq 200); do curl -s -o /dev/null "$url/" && break; sleep 0.05; done
grep -q "isolation=full" "$work/server.log" || echo "note: sandboxes are not fully isolated on this machine (see $work/server.log)"

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Cold: wait until the idle sandbox is reaped, then time one request.
cold=$(for _ in $(seq 15); do
  sleep 1.6
  curl -s -o /dev/null -w '%{time_total}\n' "$url/py/hello"
done | median)
bare=$(cd "$app/src" && hyperfine -N -w 3 -r 30 --export-json "$work/bare.json" \
  "/usr/bin/python3 -c 'import app'" >/dev/null && python3 -c "import json; print(json.load(open('$work/bare.json'))['results'][0]['median'])")
key=$(cat "$work/data/admin.key")
init=$(curl -s -H "Authorization: Bearer $key" "$url/v1/functions/py-hello/invocations?limit=100" |
  python3 -c 'import json, statistics, sys; r = [x["init_us"] for x in json.load(sys.stdin) if x["cold_start"]]; print(statistics.median(r) / 1000)')
awk -v c="$cold" -v b="$bare" -v i="$init" 'BEGIN { printf "cold start (scale from zero, first response): %.1f ms (sandbox start to runtime ready: %.1f ms); bare python3 -c \"import app\": %.1f ms; ratio %.2fx (target <= 1.3x)\n", c*1000, i, b*1000, c/b }'

# Warm: one connection, then N.
measure() { # connections
  wrk -t 1 -c "$1" -d "${dur}s" --latency "$url/py/hello" | awk '
    function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return v*1000; if (v ~ /s$/) return v*1e6; return v }
    /^ +50%/ { p50 = us($2) } /^ +99%/ { p99 = us($2) } /Requests\/sec/ { rps = $2 }
    END { printf "%.0f %.0f %.0f\n", rps, p50, p99 }'
}
curl -s -o /dev/null "$url/py/hello"
read -r rps1 p50 p99 < <(measure 1)
inproc=$(cd "$app/src" && AWS_REGION=us-east-1 /usr/bin/python3 - <<'PY'
import contextlib, io, statistics, timeit
import app
class Ctx: function_name = "py-hello"
event = {"queryStringParameters": {}, "rawPath": "/py/hello"}
def call():
    with contextlib.redirect_stdout(io.StringIO()):
        app.handler(event, Ctx())
runs = timeit.repeat(call, number=1, repeat=2000)
print(statistics.median(runs) * 1e6)
PY
)
floor=$(wrk -t 1 -c 1 -d "${dur}s" --latency "$url/nothing-here" | awk '
  function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return v*1000; if (v ~ /s$/) return v*1e6; return v }
  /^ +50%/ { print us($2) }')
# The platform's own share: the recorded duration of each warm invocation (from handing the event
# to the sandbox's Runtime API to receiving the result), which excludes the HTTP client and gateway.
recorded=$(curl -s -H "Authorization: Bearer $key" "$url/v1/functions/py-hello/invocations?limit=1000" |
  python3 -c 'import json, statistics, sys; r = [x["duration_us"] for x in json.load(sys.stdin) if not x["cold_start"]]; print(statistics.median(r))')
awk -v p50="$p50" -v p99="$p99" -v r="$rps1" -v i="$inproc" -v f="$floor" -v d="$recorded" 'BEGIN {
  printf "warm, 1 connection: %s req/s, p50 %.0f us, p99 %.0f us (a 404 from the same server: p50 %.0f us)\n", r, p50, p99, f
  printf "in-process handler call p50 %.1f us; recorded invocation duration median %.0f us\n", i, d
  printf "overhead over the in-process call at p50: %.0f us end to end, %.0f us beyond the HTTP round trip, %.0f us inside the platform (target <= 200 us)\n", p50 - i, p50 - f - i, d - i }'
read -r rpsn p50n p99n < <(measure "$conns")
echo "warm, $conns connections: $rpsn req/s, p50 ${p50n} us, p99 ${p99n} us"
