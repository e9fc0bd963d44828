#!/usr/bin/env bash
# Runs the durable benchmark's workflow on Restate (bench/durable/restate-flow.cjs: three
# journaled ctx.run steps) N times with C at once and prints `executions/s p50_ms p99_ms`.
# Restate checks for a new release at every start and cannot be told not to, so it, its service
# and the load generator run in a loopback-only network namespace (`unshare -n`; needs root).
# Usage: bench/durable/restate-run.sh RESTATE_DIR PYTHON WORK_DIR N C
# (Restate 1.7.12 and its TypeScript SDK 1.17.2, installed into RESTATE_DIR on first use.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
restate=$1 python=$2 work=$3 n=$4 c=$5
# Installed once (npm) into RESTATE_DIR.
if [ ! -x "$restate/node_modules/.bin/restate-server" ]; then
  mkdir -p "$restate"
  (cd "$restate" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent \
    @restatedev/restate-server@1.7.12 @restatedev/restate-sdk@1.17.2)
fi
cat > "$work/restate.sh" <<SH
set -euo pipefail
ip link set lo up
"$restate/node_modules/.bin/restate-server" --no-logo --listen-mode tcp --base-dir "$work/restate" >"$work/restate.log" 2>&1 &
server=\$!
NODE_PATH="$restate/node_modules" node "$here/restate-flow.cjs" >"$work/restate-service.log" 2>&1 &
service=\$!
trap 'kill \$server \$service 2>/dev/null || true' EXIT
for _ in \$(seq 300); do curl -sf localhost:9070/health >/dev/null && break; sleep 0.1; done
for _ in \$(seq 100); do
  curl -sf -X POST localhost:9070/deployments -H 'content-type: application/json' \
    -d '{"uri": "http://127.0.0.1:9080"}' >/dev/null && break
  sleep 0.2
done
"$python" "$here/load.py" restate http://127.0.0.1:8080 "$n" "$c"
SH
unshare -n bash "$work/restate.sh"
