#!/usr/bin/env bash
# Nimbus vs `wasmtime serve` (wasmtime-cli 48.0.8) on the same hello component, same machine, same
# run. Prints req/s, p50 and p99 for both at 1 and 16 connections and the Nimbus/wasmtime ratios,
# the first-request-after-deploy latency vs warm, and idle RSS with 100 deployed functions.
#
# Needs: wrk (apt), curl, and wasmtime-cli 48.0.8 (installed here with cargo if missing, ~12 min).
# Usage: bench/http-hello.sh [DURATION_SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dur=${1:-10}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

command -v wrk >/dev/null || { echo "install wrk (apt-get install -y wrk)" >&2; exit 1; }
if ! wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.0\.8'; then
  cargo install wasmtime-cli@48.0.8 --locked
fi
# NIMBUS_BIN: measure that binary instead (e.g. an earlier release, for before/after).
if [ -z "${NIMBUS_BIN:-}" ]; then (cd "$root" && cargo build --release -p nimbus); fi
nimbus="${NIMBUS_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/nimbus}"
component="$root/examples/hello-http/hello.wasm"

# Any HTTP answer (even 404/401) means the server is up.
wait_http() { for _ in $(seq 200); do curl -sS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }

# wrk prints latency distribution with --latency; pull req/s, p50 and p99 (in ms).
measure() { # url connections
  wrk -t "$(( $2 < 2 ? 1 : 2 ))" -c "$2" -d "${dur}s" --latency "$1" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /Requests\/sec/ { rps = $2 }
    END { printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}

wasmtime serve --addr 127.0.0.1:18801 "$component" >/dev/null 2>&1 & pids+=($!)
"$nimbus" up --data-dir "$work/nimbus" --listen 127.0.0.1:18802 --deploy "$root/examples/hello-http" >/dev/null 2>&1 & pids+=($!)
wait_http http://127.0.0.1:18801/hello; wait_http http://127.0.0.1:18802/hello

printf '%-22s %10s %10s %10s\n' "" "req/s" "p50 ms" "p99 ms"
for c in 1 16; do
  read -r w_rps w_p50 w_p99 < <(measure http://127.0.0.1:18801/hello "$c")
  read -r n_rps n_p50 n_p99 < <(measure http://127.0.0.1:18802/hello "$c")
  printf '%-22s %10s %10s %10s\n' "wasmtime serve c=$c" "$w_rps" "$w_p50" "$w_p99" "nimbus c=$c" "$n_rps" "$n_p50" "$n_p99"
  awk -v a="$n_rps" -v b="$w_rps" -v c="$n_p50" -v d="$w_p50" -v k="$c" \
    'BEGIN { printf "ratio c=%s: req/s %.2fx, p50 %.2fx (nimbus/wasmtime)\n", k, a/b, c/d }'
done

# Cold (first request after deploy) vs warm, on a fresh copy of the app.
key=$(cat "$work/nimbus/admin.key")
mkdir -p "$work/cold"; cp "$component" "$work/cold/hello.wasm"
sed 's/app = "hello"/app = "cold"/; s/\[functions.hello\]/[functions.cold]/; s#/hello#/cold#g' \
  "$root/examples/hello-http/nimbus.toml" > "$work/cold/nimbus.toml"
NIMBUS_URL=http://127.0.0.1:18802 NIMBUS_API_KEY=$key "$nimbus" deploy "$work/cold" >/dev/null
cold=$(curl -s -o /dev/null -w '%{time_total}' http://127.0.0.1:18802/cold)
warm=$(for _ in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' http://127.0.0.1:18802/cold; done | sort -n | sed -n 10p)
awk -v c="$cold" -v w="$warm" 'BEGIN { printf "first request after deploy %.3f ms, warm median %.3f ms, difference %.3f ms\n", c*1000, w*1000, (c-w)*1000 }'

# Idle RSS with 100 deployed functions (fresh server, after deploys, nothing running).
"$nimbus" up --data-dir "$work/idle" --listen 127.0.0.1:18803 >/dev/null 2>&1 & idle=$!; pids+=($idle)
wait_http http://127.0.0.1:18803/none
for i in $(seq 100); do
  mkdir -p "$work/apps/f$i"; cp "$component" "$work/apps/f$i/hello.wasm"
  printf 'app = "a%s"\n[functions.f%s]\nruntime = "wasm"\nsource = "hello.wasm"\ntriggers = [{ http = "GET /f%s" }]\n' "$i" "$i" "$i" > "$work/apps/f$i/nimbus.toml"
  NIMBUS_URL=http://127.0.0.1:18803 NIMBUS_API_KEY=$(cat "$work/idle/admin.key") "$nimbus" deploy "$work/apps/f$i" >/dev/null
done
kill "$idle"; wait "$idle" 2>/dev/null || true
"$nimbus" up --data-dir "$work/idle" --listen 127.0.0.1:18803 >/dev/null 2>&1 & idle=$!; pids+=($idle)
sleep 2
echo "idle RSS after restart with 100 deployed functions: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$idle/status)"
w=$(pgrep -f 'wasmtime serve --addr 127.0.0.1:18801' | head -1)
echo "wasmtime serve RSS (one component, after load): $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$w/status)"
