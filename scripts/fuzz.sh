#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time each, starting from the
# committed seeds and past crashes. A crash stops the run; its input is left in
# fuzz/artifacts/<target>/ — copy it to fuzz/regressions/<target>/ once fixed, so the test
# suite (crates/nimbus-fuzz/tests/corpus.rs) keeps it fixed.
#
#   scripts/fuzz.sh              # every target, NIMBUS_FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh 300 sigv4    # one target, five minutes
#
# Needs the nightly toolchain and cargo-fuzz (installed here if missing). Builds go to
# NIMBUS_FUZZ_TARGET_DIR (default fuzz/target).
set -euo pipefail
cd "$(dirname "$0")/.."
unset CARGO_TARGET_DIR
target_dir="${NIMBUS_FUZZ_TARGET_DIR:-fuzz/target}"
# The fuzzed code builds with the versions the product's lock file pins.
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock

seconds="${1:-${NIMBUS_FUZZ_SECONDS:-60}}"
shift || true
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O -a --target-dir "$target_dir"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "fuzz/regressions/$t"
  echo "== fuzz $t (${seconds}s)"
  # The first directory collects what the run finds (thrown away); the others are read.
  cargo +nightly fuzz run -O -a --target-dir "$target_dir" "$t" "$work/$t" "fuzz/seeds/$t" "fuzz/regressions/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|.*panicked|Test unit written)' || true
  if [ -n "$(ls -A "fuzz/artifacts/$t" 2>/dev/null)" ]; then
    echo "fuzz target $t failed: see fuzz/artifacts/$t" >&2
    exit 1
  fi
done
