#!/usr/bin/env bash
# Durable execution benchmark, Nimbus next to Restate on this machine in the same run: a
# 3-step workflow (each step a no-op, each checkpointed) run N times with C at once, end to end
# (start to result): executions/s and latency p50/p99, and the ratios.
#   - Nimbus: a Python durable function (AWS durable execution SDK 3.x), started with a
#     synchronous Lambda Invoke (boto3); its journal in SQLite (synchronous=FULL: an fsync per
#     checkpoint), its wake-ups in the event log.
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
restate=${NIMBUS_BENCH_RESTATE:-/var/tmp/nimbus-bench/restate}
"$python" -c 'import boto3' 2>/dev/null || { echo "$python has no boto3: run scripts/test.sh once or set NIMBUS_BENCH_PYTHON" >&2; exit 1; }
[ -d "$sdk/aws_durable_execution_sdk_python" ] || { echo "no durable SDK in $sdk: run scripts/test.sh once" >&2; exit 1; }
if [ ! -x "$restate/node_modules/.bin/restate-server" ]; then
  mkdir -p "$restate"
  (cd "$restate" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent \
    @restatedev/restate-server@1.7.12 @restatedev/restate-sdk@1.17.2)
fi
# NIMBUS_BIN: measure that binary instead (e.g. an earlier release, for before/after).
if [ -z "${NIMBUS_BIN:-}" ]; then (cd "$root" && cargo build --release -q -p nimbus); fi
nimbus="${NIMBUS_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/nimbus}"

# Nimbus: the workflow with the SDK beside it (botocore's models but Lambda's left out).
app="$work/app"
mkdir -p "$app"
cp "$root/bench/durable/flow.py" "$app/"
(cd "$sdk" && tar cf - --exclude=__pycache__ --exclude='botocore/data/*' --exclude=bin .) | (cd "$app" && tar xf -)
mkdir -p "$app/botocore/data" && cp -r "$sdk/botocore/data/lambda" "$sdk/botocore/data/"*.json "$app/botocore/data/"
cat > "$app/nimbus.toml" <<'TOML'
app = "bench"
[functions.flow]
runtime = "python"
source = "."
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
read -r n_rps n_p50 n_p99 < <("$python" "$root/bench/durable/load.py" nimbus "$url" "$n" "$c")

# Restate, in its own loopback-only network namespace.
cat > "$work/restate.sh" <<SH
set -euo pipefail
ip link set lo up
"$restate/node_modules/.bin/restate-server" --no-logo --listen-mode tcp --base-dir "$work/restate" >"$work/restate.log" 2>&1 &
server=\$!
NODE_PATH="$restate/node_modules" node "$root/bench/durable/restate-flow.cjs" >"$work/restate-service.log" 2>&1 &
service=\$!
trap 'kill \$server \$service 2>/dev/null || true' EXIT
for _ in \$(seq 300); do curl -sf localhost:9070/health >/dev/null && break; sleep 0.1; done
for _ in \$(seq 100); do
  curl -sf -X POST localhost:9070/deployments -H 'content-type: application/json' \
    -d '{"uri": "http://127.0.0.1:9080"}' >/dev/null && break
  sleep 0.2
done
"$python" "$root/bench/durable/load.py" restate http://127.0.0.1:8080 "$n" "$c"
SH
read -r r_rps r_p50 r_p99 < <(unshare -n bash "$work/restate.sh")

awk -v n="$n" -v c="$c" -v nr="$n_rps" -v n50="$n_p50" -v n99="$n_p99" \
  -v rr="$r_rps" -v r50="$r_p50" -v r99="$r_p99" 'BEGIN {
  printf "3-step durable workflow, %d executions, %d at once, end to end (start to result):\n", n, c
  printf "  nimbus : %7.1f executions/s, p50 %6.1f ms, p99 %6.1f ms\n", nr, n50, n99
  printf "  restate: %7.1f executions/s, p50 %6.1f ms, p99 %6.1f ms\n", rr, r50, r99
  printf "  ratio (nimbus/restate): throughput %.2fx (target >= 2x), p50 %.2fx (target <= 1x)\n", nr / rr, n50 / r50
}'
