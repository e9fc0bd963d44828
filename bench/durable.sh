#!/usr/bin/env bash
# Durable execution benchmark, Nimbus next to Restate on this machine in the same run: a
# 3-step workflow (each step a no-op, each checkpointed) run N times with C at once, end to end
# (start to result): executions/s and latency p50/p99, and the ratios.
#   - Nimbus: the workflow as a durable function with the AWS durable execution SDK for
#     JavaScript (2.x; the language of Restate's service) and for Python (3.x), started with a
#     synchronous Lambda Invoke (boto3); journals in SQLite (synchronous=FULL: an fsync per
#     checkpoint), wake-ups in the event log. Printed beside each: the median time the handler
#     itself took (the invocation records), the rest being Nimbus's start, wake-up and answer.
#   - Restate 1.7.12 (`@restatedev/restate-server` from npm) and its TypeScript SDK: a service
#     handler with three `ctx.run` steps, called through the ingress; Restate's defaults
#     (its log and RocksDB WALs fsynced). Restate checks for a new release at every start and
#     cannot be told not to, so it, its service and the load generator run in a loopback-only
#     network namespace (`unshare -n`; needs root).
# Targets (issue 13): >= 2x Restate's executions/s, p50 at or below Restate's.
# Needs: node/npm (Restate is installed once into NIMBUS_BENCH_RESTATE), curl, a Python with
# boto3 (NIMBUS_BENCH_PYTHON, default scripts/test.sh's venv), the SDK as function code
# (NIMBUS_TEST_DURABLE_SDK, as scripts/test.sh installs it).
# Usage: bench/durable.sh [N] [C]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-300}
c=${2:-8}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

python=${NIMBUS_BENCH_PYTHON:-/var/tmp/nimbus-venv/bin/python}
sdk=${NIMBUS_TEST_DURABLE_SDK:-/var/tmp/nimbus-durable-sdk/python}
sdk_node=${NIMBUS_TEST_DURABLE_SDK_NODE:-/var/tmp/nimbus-durable-sdk/node}
restate=${NIMBUS_BENCH_RESTATE:-/var/tmp/nimbus-bench/restate}
"$python" -c 'import boto3' 2>/dev/null || { echo "$python has no boto3: run scripts/test.sh once or set NIMBUS_BENCH_PYTHON" >&2; exit 1; }
[ -d "$sdk/aws_durable_execution_sdk_python" ] || { echo "no durable SDK in $sdk: run scripts/test.sh once" >&2; exit 1; }
[ -d "$sdk_node/node_modules/@aws/durable-execution-sdk-js" ] || { echo "no durable JS SDK in $sdk_node: run scripts/test.sh once" >&2; exit 1; }
# NIMBUS_BIN: measure that binary instead (e.g. an earlier release, for before/after).
if [ -z "${NIMBUS_BIN:-}" ]; then (cd "$root" && cargo build --release -q -p nimbus); fi
nimbus="${NIMBUS_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/nimbus}"

# Nimbus: the workflow in each language with its SDK beside it (botocore's models but
# Lambda's left out).
app="$work/app"
mkdir -p "$app/py" "$app/js"
cp "$root/bench/durable/flow.py" "$app/py/"
(cd "$sdk" && tar cf - --exclude=__pycache__ --exclude='botocore/data/*' --exclude=bin .) | (cd "$app/py" && tar xf -)
mkdir -p "$app/py/botocore/data" && cp -r "$sdk/botocore/data/lambda" "$sdk/botocore/data/"*.json "$app/py/botocore/data/"
cp "$root/bench/durable/flow.js" "$app/js/"
cp -r "$sdk_node/node_modules" "$app/js/"
cat > "$app/nimbus.toml" <<'TOML'
app = "bench"
[functions.pyflow]
runtime = "python"
source = "py"
handler = "flow.handler"
timeout = "30s"
max_concurrency = 8
durable = true
[functions.jsflow]
runtime = "node"
source = "js"
handler = "flow.handler"
timeout = "30s"
max_concurrency = 8
durable = true
TOML
url=http://127.0.0.1:18841
"$nimbus" up --data-dir "$work/data" --listen 127.0.0.1:18841 --deploy "$app" >/dev/null 2>"$work/nimbus.log" & pids+=($!)
for _ in $(seq 600); do curl -s -o /dev/null "$url/healthz" && break; sleep 0.1; done
export AWS_SHARED_CREDENTIALS_FILE="$work/data/aws-credentials" AWS_CONFIG_FILE=/dev/null
for _ in $(seq 600); do [ -f "$AWS_SHARED_CREDENTIALS_FILE" ] && break; sleep 0.1; done
key=$(cat "$work/data/admin.key")
handler_ms() { # function: the median duration of its warm handler invocations
  curl -s -H "Authorization: Bearer $key" "$url/v1/functions/$1/invocations?limit=1000" |
    "$python" -c 'import json, statistics, sys; r = [x["duration_us"] for x in json.load(sys.stdin) if not x["cold_start"]]; print(statistics.median(r) / 1000)'
}
read -r j_rps j_p50 j_p99 < <("$python" "$root/bench/durable/load.py" nimbus "$url" "$n" "$c" jsflow)
j_handler=$(handler_ms jsflow)
read -r p_rps p_p50 p_p99 < <("$python" "$root/bench/durable/load.py" nimbus "$url" "$n" "$c" pyflow)
p_handler=$(handler_ms pyflow)

# Restate, in its own loopback-only network namespace.
read -r r_rps r_p50 r_p99 < <(bash "$root/bench/durable/restate-run.sh" "$restate" "$python" "$work" "$n" "$c")

awk -v n="$n" -v c="$c" -v jr="$j_rps" -v j50="$j_p50" -v j99="$j_p99" -v jh="$j_handler" \
  -v pr="$p_rps" -v p50="$p_p50" -v p99="$p_p99" -v ph="$p_handler" \
  -v rr="$r_rps" -v r50="$r_p50" -v r99="$r_p99" 'BEGIN {
  printf "3-step durable workflow, %d executions, %d at once, end to end (start to result):\n", n, c
  printf "  nimbus, JS SDK    : %7.1f executions/s, p50 %6.1f ms, p99 %6.1f ms (the handler itself: median %.1f ms)\n", jr, j50, j99, jh
  printf "  nimbus, Python SDK: %7.1f executions/s, p50 %6.1f ms, p99 %6.1f ms (the handler itself: median %.1f ms)\n", pr, p50, p99, ph
  printf "  restate, TS SDK   : %7.1f executions/s, p50 %6.1f ms, p99 %6.1f ms\n", rr, r50, r99
  printf "  ratio (nimbus JS / restate): throughput %.2fx (target >= 2x), p50 %.2fx (target <= 1x)\n", jr / rr, j50 / r50
  printf "  ratio (nimbus Python / restate): throughput %.2fx, p50 %.2fx\n", pr / rr, p50 / r50
}'
