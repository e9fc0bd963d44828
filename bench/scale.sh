#!/usr/bin/env bash
# Scale from zero under a burst, same machine, same run:
#   - wasm: N concurrent GETs (default 500) hit examples/hello-http on Nimbus after its instance
#     was scaled to zero (--keep-alive 2s), and the same component on a freshly started
#     `wasmtime serve` (wasmtime-cli 48.0.8) that has served nothing yet;
#   - Python: the same burst on examples/python-hello (a copy with max_concurrency = 100)
#     after its sandboxes were reaped: time to serve all, sandboxes started, p50/p99. No peer
#     runs Lambda-style Python functions on this machine, so these numbers stand alone.
# Three rounds each; prints every round and the medians, and the Nimbus/wasmtime ratios, with
# the connections each server's listen queue dropped (each costs its client a 1 s SYN retry).
# Then the keep-alive simulator (bench/keepalive.sh): fixed 10 min vs adaptive.
#
# Needs: curl, and wasmtime-cli 48.0.8 (installed here with cargo if missing, ~12 min).
# Usage: bench/scale.sh [REQUESTS] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-500}
rounds=${2:-3}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

if ! wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.0\.8'; then
  cargo install wasmtime-cli@48.0.8 --locked
fi
# NIMBUS_BIN: measure that binary instead (e.g. an earlier release, for before/after).
if [ -z "${NIMBUS_BIN:-}" ]; then (cd "$root" && cargo build --release -q -p nimbus); fi
nimbus="${NIMBUS_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/nimbus}"
(cd "$root/bench/events-load" && CARGO_TARGET_DIR="$root/target/bench" cargo build --release -q)
load="$root/target/bench/release/events-load"
component="$root/examples/hello-http/hello.wasm"
ulimit -n 65536 2>/dev/null || true

# The port accepts connections (no HTTP request: nothing is warmed).
wait_port() { for _ in $(seq 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "nothing listens on $1" >&2; exit 1; }
# The kernel's count of connections dropped because a listen queue was full (the client's
# SYN is retransmitted after 1 s): a server with a short accept backlog pays that in its tail.
overflows() { awk '/^TcpExt:/ { if (!h) { split($0, k); h = 1 } else { for (i = 2; i <= NF; i++) if (k[i] == "ListenOverflows") print $i } }' /proc/net/netstat; }
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# `nimbus show F`'s instances line: "W warm, B busy, S started".
instances() { NIMBUS_URL=$url NIMBUS_API_KEY=$key "$nimbus" show "$1" | awk '/^instances/ { print $2, $4, $6 }'; }
until_cold() { for _ in $(seq 200); do read -r w b _ < <(instances "$1"); [ "$w $b" = "0 0" ] && return 0; sleep 0.1; done; echo "$1 did not scale to zero" >&2; exit 1; }

url=http://127.0.0.1:18821
mkdir -p "$work/py"; cp -r "$root/examples/python-hello/src" "$work/py/src"
sed 's/timeout = "5s"/timeout = "5s"\nmax_concurrency = 100/' "$root/examples/python-hello/nimbus.toml" > "$work/py/nimbus.toml"
"$nimbus" up --data-dir "$work/data" --listen 127.0.0.1:18821 --keep-alive 2s \
  --deploy "$root/examples/hello-http" --deploy "$work/py" >/dev/null 2>"$work/server.log" & pids+=($!)
wait_port 18821
for _ in $(seq 200); do [ -f "$work/data/admin.key" ] && break; sleep 0.05; done
key=$(cat "$work/data/admin.key")
sleep 1

printf '%-30s %10s %10s %10s %8s %10s %10s\n' "" "all (s)" "p50 ms" "p99 ms" "ok" "started" "syn drops"
: > "$work/wasm"; : > "$work/wt"; : > "$work/py.out"
for r in $(seq "$rounds"); do
  until_cold hello
  read -r _ _ s0 < <(instances hello)
  o0=$(overflows)
  read -r all p50 p99 ok failed < <("$load" --events "$n" burst --url "$url/hello")
  o1=$(overflows)
  read -r _ _ s1 < <(instances hello)
  printf '%-30s %10s %10s %10s %8s %10s %10s\n' "nimbus wasm, round $r" "$all" "$p50" "$p99" "$ok/$n" "$((s1 - s0))" "$((o1 - o0))"
  echo "$all $p50 $p99" >> "$work/wasm"

  wasmtime serve --addr 127.0.0.1:18822 "$component" >/dev/null 2>&1 & wt=$!
  wait_port 18822
  o0=$(overflows)
  read -r all p50 p99 ok failed < <("$load" --events "$n" burst --url "http://127.0.0.1:18822/hello")
  o1=$(overflows)
  kill "$wt"; wait "$wt" 2>/dev/null || true
  printf '%-30s %10s %10s %10s %8s %10s %10s\n' "wasmtime serve, round $r" "$all" "$p50" "$p99" "$ok/$n" "-" "$((o1 - o0))"
  echo "$all $p50 $p99" >> "$work/wt"

  until_cold py-hello
  read -r _ _ s0 < <(instances py-hello)
  o0=$(overflows)
  read -r all p50 p99 ok failed < <("$load" --events "$n" burst --url "$url/py/hello")
  o1=$(overflows)
  read -r _ _ s1 < <(instances py-hello)
  printf '%-30s %10s %10s %10s %8s %10s %10s\n' "nimbus python, round $r" "$all" "$p50" "$p99" "$ok/$n" "$((s1 - s0))" "$((o1 - o0))"
  echo "$all $p50 $p99" >> "$work/py.out"
done

col() { awk -v c="$2" '{ print $c }' "$1" | median; }
echo
for f in wasm wt py.out; do
  printf 'median %-10s all %s s, p50 %s ms, p99 %s ms\n' "$f" "$(col "$work/$f" 1)" "$(col "$work/$f" 2)" "$(col "$work/$f" 3)"
done
awk -v a="$(col "$work/wasm" 1)" -v b="$(col "$work/wt" 1)" -v c="$(col "$work/wasm" 3)" -v d="$(col "$work/wt" 3)" \
  'BEGIN { printf "ratio nimbus/wasmtime (wasm burst from zero): time to serve all %.2fx, p99 %.2fx\n", a/b, c/d }'
grep -q "isolation=full" "$work/server.log" || echo "note: sandboxes were not fully isolated on this machine"

echo
echo "== keep-alive simulator: fixed 10 min vs adaptive (bench/keepalive.sh)"
"$root/bench/keepalive.sh"
