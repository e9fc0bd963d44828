#!/usr/bin/env bash
# Step Functions benchmark, Nimbus next to Restate on this machine in the same run:
#   - the durable benchmark's 3-step workflow (bench/durable.sh) as Amazon States Language: three
#     Task states on a no-op wasm function (bench/stepfunctions/flow.asl.json), run N times with
#     C at once, end to end (StartSyncExecution through boto3: start to result in one call):
#     executions/s and latency p50/p99. Nimbus journals every state transition and task result
#     in SQLite (synchronous=FULL: an fsync per checkpoint) whatever the type: an EXPRESS machine
#     runs on the same durable engine as a STANDARD one, so this is the Standard durability.
#   - Restate 1.7.12 and its TypeScript SDK with the same three journaled steps (ctx.run), called
#     through its ingress, with Restate's defaults (log and RocksDB WALs fsynced); it runs, with
#     its service and the load generator, in a loopback-only network namespace (`unshare -n`;
#     needs root), because it checks for a new release at every start.
#   - a Map state over ITEMS items (default 10,000), 40 at once, each item a no-op wasm task:
#     items/s (Nimbus only: the issue's measure of fan-out).
# Target (issue 14): >= 2x Restate's executions/s.
# Needs: node/npm (Restate is installed once into NIMBUS_BENCH_RESTATE), curl, a Python with
# boto3 (NIMBUS_BENCH_PYTHON, default scripts/test.sh's venv).
# Usage: bench/stepfunctions.sh [N] [C] [ITEMS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-300}
c=${2:-8}
items=${3:-10000}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

python=${NIMBUS_BENCH_PYTHON:-/var/tmp/nimbus-venv/bin/python}
restate=${NIMBUS_BENCH_RESTATE:-/var/tmp/nimbus-bench/restate}
"$python" -c 'import boto3' 2>/dev/null || { echo "$python has no boto3: run scripts/test.sh once or set NIMBUS_BENCH_PYTHON" >&2; exit 1; }
# NIMBUS_BIN: measure that binary instead (e.g. an earlier release, for before/after).
if [ -z "${NIMBUS_BIN:-}" ]; then (cd "$root" && cargo build --release -q -p nimbus); fi
nimbus="${NIMBUS_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/nimbus}"

app="$work/app"
mkdir -p "$app"
cp "$root/bench/stepfunctions/"*.asl.json "$root/bench/stepfunctions/nimbus.toml" "$app/"
cp "$root/tests/fixtures/noop.wasm" "$app/"
url=http://127.0.0.1:18851
if curl -s -o /dev/null "$url/healthz"; then echo "something already listens on $url: stop it first" >&2; exit 1; fi
"$nimbus" up --data-dir "$work/data" --listen 127.0.0.1:18851 --deploy "$app" >/dev/null 2>"$work/nimbus.log" & pids+=($!)
for _ in $(seq 600); do curl -s -o /dev/null "$url/healthz" && break; sleep 0.1; done
export AWS_SHARED_CREDENTIALS_FILE="$work/data/aws-credentials" AWS_CONFIG_FILE=/dev/null
for _ in $(seq 600); do [ -f "$AWS_SHARED_CREDENTIALS_FILE" ] && break; sleep 0.1; done
read -r s_rps s_p50 s_p99 < <("$python" "$root/bench/stepfunctions/load.py" flow "$url" "$n" "$c")
read -r m_ips m_secs < <("$python" "$root/bench/stepfunctions/load.py" map "$url" "$items")

# Restate, in its own loopback-only network namespace (the durable benchmark's service).
read -r r_rps r_p50 r_p99 < <(bash "$root/bench/durable/restate-run.sh" "$restate" "$python" "$work" "$n" "$c")

awk -v n="$n" -v c="$c" -v items="$items" -v sr="$s_rps" -v s50="$s_p50" -v s99="$s_p99" \
  -v mi="$m_ips" -v ms="$m_secs" -v rr="$r_rps" -v r50="$r_p50" -v r99="$r_p99" 'BEGIN {
  printf "3-step workflow, %d executions, %d at once, end to end (start to result):\n", n, c
  printf "  nimbus, ASL (3 wasm tasks): %7.1f executions/s, p50 %6.1f ms, p99 %6.1f ms\n", sr, s50, s99
  printf "  restate, TS SDK (3 steps) : %7.1f executions/s, p50 %6.1f ms, p99 %6.1f ms\n", rr, r50, r99
  printf "  ratio (nimbus / restate): throughput %.2fx (target >= 2x), p50 %.2fx\n", sr / rr, s50 / r50
  printf "Map of %d items, 40 at once, a no-op wasm task each: %.1f items/s (%.2f s)\n", items, mi, ms
}'
