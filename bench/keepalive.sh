#!/usr/bin/env bash
# Keep-alive policies on synthetic traces shaped like the Azure Functions trace of "Serverless in
# the Wild" (USENIX ATC 2020): 40% timers, 25% rare, 20% medium, 10% bursty, 5% very hot functions.
# Replays each trace through the fixed 10-minute keep-alive and the hybrid histogram policy
# (crates/nimbus-core/src/keepalive.rs) and prints cold starts and idle instance time, overall and
# per kind, for three seeds.
#
# Usage: bench/keepalive.sh [FUNCTIONS] [DAYS]   (defaults 1000, 7)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -q -p nimbus-core --example keepalive_sim
for seed in 2020 7 42; do
  cargo run --release -q -p nimbus-core --example keepalive_sim -- "${1:-1000}" "${2:-7}" "$seed"
  echo
done
