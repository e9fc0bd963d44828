#!/usr/bin/env bash
# The cost of tenant routing on the data plane: the same wasm hello function, served
#   - by a node with no tenants (the single-user path; the peer every other line is compared to),
#   - by the default tenant of a node that has tenants (each request checked for a prefix/domain),
#   - by a tenant, under its path prefix (/tenants/acme/hello),
#   - by a tenant, on its custom domain (Host: api.acme.bench).
# Prints req/s, p50 and p99 at 1 and 16 connections, and each line's ratio to the first. With
# BASE_BIN set (an earlier nimbus release binary), also the single-user path of that binary, the
# before/after of the dispatch layer itself.
#
# Needs: wrk (apt), curl. Usage: bench/tenants.sh [DURATION_SECONDS] (NIMBUS_BIN: the binary to
# measure; default: a release build of this checkout).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dur=${1:-10}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

command -v wrk >/dev/null || { echo "install wrk (apt-get install -y wrk)" >&2; exit 1; }
if [ -z "${NIMBUS_BIN:-}" ]; then (cd "$root" && cargo build --release -p nimbus); fi
nimbus="${NIMBUS_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/nimbus}"
app="$root/examples/hello-http"

wait_http() { for _ in $(seq 200); do curl -sS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }

measure() { # connections url [wrk args...]
  local c=$1; shift
  wrk -t "$(( c < 2 ? 1 : 2 ))" -c "$c" -d "${dur}s" --latency "$@" | awk '
    /Non-2xx/ { print "wrk saw non-2xx answers: " $0 > "/dev/stderr"; bad = 1 }
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /Requests\/sec/ { rps = $2 }
    END { if (bad) exit 1; printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}

# The single-user node (and the earlier binary's, when given).
"$nimbus" up --data-dir "$work/single" --listen 127.0.0.1:18811 --deploy "$app" >/dev/null 2>&1 & pids+=($!)
if [ -n "${BASE_BIN:-}" ]; then
  "$BASE_BIN" up --data-dir "$work/base" --listen 127.0.0.1:18813 --deploy "$app" >/dev/null 2>&1 & pids+=($!)
  wait_http http://127.0.0.1:18813/hello
fi
# The node with tenants: acme (with a domain) and a second one, each with the same app.
"$nimbus" up --data-dir "$work/multi" --listen 127.0.0.1:18812 --deploy "$app" >/dev/null 2>&1 & pids+=($!)
wait_http http://127.0.0.1:18811/hello; wait_http http://127.0.0.1:18812/hello
export NIMBUS_URL=http://127.0.0.1:18812 NIMBUS_API_KEY; NIMBUS_API_KEY=$(cat "$work/multi/admin.key")
"$nimbus" tenant create acme --domain api.acme.bench >/dev/null
"$nimbus" tenant create other >/dev/null
for t in acme other; do
  key=$("$nimbus" key create --tenant "$t" --role deployer --json | sed -n 's/.*"key": "\(nmb_[^"]*\)".*/\1/p')
  NIMBUS_API_KEY=$key "$nimbus" deploy "$app" >/dev/null
done
for u in http://127.0.0.1:18812/hello http://127.0.0.1:18812/tenants/acme/hello; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$u")" = 200 ] || { echo "$u did not answer 200" >&2; exit 1; }
done

printf '%-36s %10s %10s %10s %8s\n' "" "req/s" "p50 ms" "p99 ms" "req/s x"
for c in 1 16; do
  read -r b_rps b_p50 b_p99 < <(measure "$c" http://127.0.0.1:18811/hello)
  line() { awk -v n="$1" -v r="$2" -v p="$3" -v q="$4" -v b="$b_rps" 'BEGIN { printf "%-36s %10s %10s %10s %7.2fx\n", n, r, p, q, r/b }'; }
  line "no tenants c=$c" "$b_rps" "$b_p50" "$b_p99"
  if [ -n "${BASE_BIN:-}" ]; then
    read -r r p q < <(measure "$c" http://127.0.0.1:18813/hello); line "no tenants, BASE_BIN c=$c" "$r" "$p" "$q"
  fi
  read -r r p q < <(measure "$c" http://127.0.0.1:18812/hello); line "default tenant, tenants exist c=$c" "$r" "$p" "$q"
  read -r r p q < <(measure "$c" http://127.0.0.1:18812/tenants/acme/hello); line "tenant by path prefix c=$c" "$r" "$p" "$q"
  read -r r p q < <(measure "$c" http://127.0.0.1:18812/hello -H "Host: api.acme.bench"); line "tenant by domain c=$c" "$r" "$p" "$q"
done
