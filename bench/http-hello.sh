#!/usr/bin/env bash
# Nimbus vs `wasmtime serve` (wasmtime-cli 48.0.8) on the same hello component, same machine, same
# run. Prints req/s, p50 and p99 for both at 1 and 16 connections and the Nimbus/wasmtime ratios,
# the first-request-after-deploy latency vs warm, and idle RSS with 100 deployed functions; then
# the cost of a JWT authorizer: the same function behind an open route and a JWT route (RS256,
# key set inline), req/s and p50 at 1 connection with one repeated token and with a fresh
# token per request (every signature verified), and the difference at p50 in microseconds.
#
# Needs: wrk (apt), curl, and wasmtime-cli 48.0.8 (installed here with cargo if missing, ~12 min);
# for the JWT part a Python with PyJWT and cryptography (NIMBUS_BENCH_PYTHON, default the test
# venv /var/tmp/nimbus-venv/bin/python that scripts/test.sh makes).
# Usage: bench/http-hello.sh [DURATION_SECONDS]; SECTIONS=auth runs only the JWT part.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dur=${1:-10}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

command -v wrk >/dev/null || { echo "install wrk (apt-get install -y wrk)" >&2; exit 1; }
sections=${SECTIONS:-all}
if [ "$sections" = all ] && ! wasmtime --version 2>/dev/null | grep -q '^wasmtime 48\.0\.8'; then
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

# The JWT authorizer's cost: one app, one function, an open route and a JWT route.
auth_section() {
  local py=${NIMBUS_BENCH_PYTHON:-/var/tmp/nimbus-venv/bin/python}
  "$py" -c 'import jwt, cryptography' || { echo "NIMBUS_BENCH_PYTHON needs PyJWT and cryptography" >&2; exit 1; }
  "$py" "$root/tests/clients/jwt_tokens.py" https://issuer.bench/ bench > "$work/issued.json"
  mkdir -p "$work/auth"; cp "$component" "$work/auth/hello.wasm"
  "$py" - "$work/issued.json" "$work/auth/nimbus.toml" "$work/tokens.txt" <<'PY'
import json, sys, time, jwt
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm
issued = json.load(open(sys.argv[1]))
# Fresh tokens: EdDSA (fast to sign here), one per request of the fresh run.
key = ed25519.Ed25519PrivateKey.generate()
ed = json.loads(OKPAlgorithm.to_jwk(key.public_key())); ed.update(kid="fresh", alg="EdDSA")
keys = {"keys": issued["jwks_url_doc"]["keys"] + [ed]}
exp = int(time.time()) + 3600
with open(sys.argv[3], "w") as f:
    for i in range(60000):
        f.write(jwt.encode({"iss": "https://issuer.bench/", "aud": "bench", "sub": f"u{i}", "exp": exp},
                           key, algorithm="EdDSA", headers={"kid": "fresh"}) + "\n")
open(sys.argv[2], "w").write(f"""app = "auth"
[http.authorizers.users]
type = "jwt"
issuer = "https://issuer.bench/"
audiences = ["bench"]
jwks = '{json.dumps(keys)}'
[functions.hello]
runtime = "wasm"
source = "hello.wasm"
triggers = [{{ http = "GET /hello" }}, {{ http = "GET /hello/{{name}}", auth = "users" }}]
# the same function: /hello is open, /hello/NAME takes a JWT
""")
PY
  "$nimbus" up --data-dir "$work/auth-data" --listen 127.0.0.1:18804 --deploy "$work/auth" >/dev/null 2>&1 & pids+=($!)
  wait_http http://127.0.0.1:18804/hello
  local token; token=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens"]["rs256"])' "$work/issued.json")
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $token" http://127.0.0.1:18804/hello/x)" = 200 ] || { echo "the JWT route refused the token" >&2; exit 1; }
  [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18804/hello/x)" = 401 ] || { echo "the JWT route admitted no token" >&2; exit 1; }
  cat > "$work/fresh.lua" <<LUA
local tokens, i = {}, 0
for line in io.lines("$work/tokens.txt") do tokens[#tokens + 1] = line end
request = function()
  i = i + 1
  return wrk.format("GET", "/hello/x", { ["authorization"] = "Bearer " .. tokens[(i - 1) % #tokens + 1] })
end
LUA
  local adur=$(( dur < 5 ? dur : 5 ))
  # Every answer must be a 2xx: a refused token would measure the refusal, not the route.
  measure_h() { wrk -t 1 -c 1 -d "${adur}s" --latency "$@" | awk '
    /Non-2xx/ { print "wrk saw non-2xx answers: " $0 > "/dev/stderr"; bad = 1 }
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /Requests\/sec/ { rps = $2 } /requests in/ { n = $1 }
    END { if (bad) exit 1; printf "%.0f %.3f %.3f %d\n", rps, p50, p99, n }'; }
  read -r o_rps o_p50 o_p99 _ < <(measure_h http://127.0.0.1:18804/hello)
  read -r j_rps j_p50 j_p99 _ < <(measure_h -H "authorization: Bearer $token" http://127.0.0.1:18804/hello/x)
  read -r f_rps f_p50 f_p99 f_n < <(measure_h -s "$work/fresh.lua" http://127.0.0.1:18804/hello/x)
  [ -n "$o_rps" ] && [ -n "$j_rps" ] && [ -n "$f_rps" ] || { echo "a measurement failed" >&2; exit 1; }
  printf '%-30s %10s %10s %10s\n' "" "req/s" "p50 ms" "p99 ms" \
    "open route c=1" "$o_rps" "$o_p50" "$o_p99" \
    "JWT route, one token" "$j_rps" "$j_p50" "$j_p99" \
    "JWT route, fresh tokens" "$f_rps" "$f_p50" "$f_p99"
  [ "$f_n" -le 60000 ] || echo "(the fresh run sent $f_n requests: tokens repeated after 60000)"
  awk -v o="$o_rps" -v j="$j_rps" -v f="$f_rps" -v op="$o_p50" -v jp="$j_p50" -v fp="$f_p50" 'BEGIN {
    printf "JWT authorizer at p50: %+.1f us with a repeated token (req/s %.2fx of open), %+.1f us verifying every token (req/s %.2fx)\n",
      (jp-op)*1000, j/o, (fp-op)*1000, f/o }'
}
if [ "$sections" = auth ]; then auth_section; exit 0; fi

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

auth_section
