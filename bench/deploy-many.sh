#!/usr/bin/env bash
# Deploying many functions: one app of N wasm HTTP functions (default 10,000) built from one
# component (examples/hello-http/hello.wasm), each with its own route. Prints the deploy time,
# the server's peak RSS (VmHWM) and RSS after the deploy, a redeploy with one function
# changed, and the idle RSS after a restart; checks the first and last functions answer. Then
# the same number of wasm *event* functions (examples/event-echo/echo.wasm; each has a consumer
# of its async invocations): deploy time, and the node's CPU while nothing happens.
# Targets: the 10,000-function deploy in <= 10 s with peak RSS <= 300 MiB, and a redeploy
# that costs what changed.
#
# The peer is the previous release on the same machine when NIMBUS_BASELINE names its binary
# (it runs the same steps; at 10,000 functions it took 404 s and 3.0 GiB, so use a smaller N).
#
# Needs: curl. Usage: bench/deploy-many.sh [N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-10000}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# NIMBUS_BIN: measure that binary instead (e.g. an earlier release, for before/after).
if [ -z "${NIMBUS_BIN:-}" ]; then (cd "$root" && cargo build --release -q -p nimbus); fi
nimbus="${NIMBUS_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/nimbus}"

mkdir -p "$work/app"
cp "$root/examples/hello-http/hello.wasm" "$work/app/"
{
  echo 'app = "many"'
  for i in $(seq "$n"); do
    printf '[functions.f%s]\nruntime = "wasm"\nsource = "hello.wasm"\ntriggers = [{ http = "GET /f%s" }]\n' "$i" "$i"
  done
} > "$work/app/nimbus.toml"

rss() { awk -v k="$2" '$1 == k":" {printf "%.1f", $2/1024}' "/proc/$1/status"; }
now() { date +%s.%N; }

run() { # label binary port
  local label=$1 bin=$2 port=$3 data="$work/data-$1"
  "$bin" up --data-dir "$data" --listen "127.0.0.1:$port" >/dev/null 2>"$work/$label.log" & local pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
  export NIMBUS_URL="http://127.0.0.1:$port" NIMBUS_API_KEY
  NIMBUS_API_KEY=$(cat "$data/admin.key")
  local before; before=$(rss "$pid" VmRSS)
  local t0; t0=$(now)
  "$nimbus" deploy "$work/app" >/dev/null
  local t1; t1=$(now)
  local first last
  first=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/f1")
  last=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/f$n")
  # One function changes (its memory): only it is prepared again.
  sed -i '0,/source = "hello.wasm"/s//source = "hello.wasm"\nmemory_mb = 64/' "$work/app/nimbus.toml"
  local t2; t2=$(now)
  "$nimbus" deploy "$work/app" >/dev/null
  local t3; t3=$(now)
  sed -i '/^memory_mb = 64$/d' "$work/app/nimbus.toml"
  printf '%-10s %5s functions: deploy %6.2f s, peak RSS %7s MiB (before %s MiB, after %s MiB), redeploy with 1 changed %5.2f s, GET /f1 %s, GET /f%s %s\n' \
    "$label" "$n" "$(echo "$t1 - $t0" | bc)" "$(rss "$pid" VmHWM)" "$before" "$(rss "$pid" VmRSS)" \
    "$(echo "$t3 - $t2" | bc)" "$first" "$n" "$last"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  "$bin" up --data-dir "$data" --listen "127.0.0.1:$port" >/dev/null 2>>"$work/$label.log" & pid=$!
  pids+=("$pid")
  for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
  sleep 1
  printf '%-10s idle RSS after a restart with %s functions: %s MiB\n' "$label" "$n" "$(rss "$pid" VmRSS)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

idle_events() { # label binary port
  local label=$1 bin=$2 port=$3 data="$work/events-$1"
  mkdir -p "$work/events"
  cp "$root/examples/event-echo/echo.wasm" "$work/events/"
  { echo 'app = "events"'
    for i in $(seq "$n"); do printf '[functions.e%s]\nruntime = "wasm"\nsource = "echo.wasm"\n' "$i"; done
  } > "$work/events/nimbus.toml"
  "$bin" up --data-dir "$data" --listen "127.0.0.1:$port" >/dev/null 2>>"$work/$label.log" & local pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
  local t0; t0=$(now)
  NIMBUS_URL="http://127.0.0.1:$port" NIMBUS_API_KEY=$(cat "$data/admin.key") "$nimbus" deploy "$work/events" >/dev/null
  local t1; t1=$(now)
  sleep 5
  local c0; c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  sleep 20
  local c1; c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  printf '%-10s %5s event functions: deploy %6.2f s, idle CPU %5.1f%% of a core, RSS %s MiB\n' \
    "$label" "$n" "$(echo "$t1 - $t0" | bc)" "$(echo "($c1 - $c0) * 100 / $(getconf CLK_TCK) / 20" | bc -l)" "$(rss "$pid" VmRSS)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

command -v bc >/dev/null || { echo "install bc (apt-get install -y bc)" >&2; exit 1; }
run nimbus "$nimbus" 18830
idle_events nimbus "$nimbus" 18832
if [ -n "${NIMBUS_BASELINE:-}" ]; then
  run baseline "$NIMBUS_BASELINE" 18831
  idle_events baseline "$NIMBUS_BASELINE" 18833
fi
