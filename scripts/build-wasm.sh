#!/usr/bin/env bash
# Rebuilds every example and test-fixture .wasm from its C source.
#
# Needs: clang + wasi-libc (apt: clang lld wasi-libc libclang-rt-dev-wasm32),
#        wasm-tools and wit-bindgen (cargo install wasm-tools; cargo install wit-bindgen-cli
#        --no-default-features --features c). The WASI adapters come from the
#        wasi-preview1-component-adapter-provider crate and the wasi:http WIT from the
#        wasmtime-wasi-http crate, both fetched from crates.io by cargo.
# The built components are committed, so running Nimbus or its tests does not need this.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for tool in clang wasm-tools wit-bindgen; do
  command -v "$tool" >/dev/null || { echo "build-wasm: missing $tool (see the header of $0)" >&2; exit 1; }
done

# Locate a crate's unpacked source, fetching it through a throwaway cargo project.
crate_src() { # name version
  local dir="$work/fetch-$1"
  mkdir -p "$dir/src" && : > "$dir/src/lib.rs"
  printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = "=%s"\n' "$1" "$2" > "$dir/Cargo.toml"
  cargo metadata --quiet --format-version 1 --manifest-path "$dir/Cargo.toml" \
    | python3 -c "import json,sys; print([p for p in json.load(sys.stdin)['packages'] if p['name']=='$1'][0]['manifest_path'].rsplit('/',1)[0])"
}
adapters=$(crate_src wasi-preview1-component-adapter-provider 48.0.1)/artefacts
wasi_wit=$(crate_src wasmtime-wasi-http 48.0.8)/wit

wit-bindgen c "$wasi_wit" --world wasi:http/proxy@0.2.12 --out-dir "$work/proxy" >/dev/null
wit-bindgen c "$root/wit" --world event-function --out-dir "$work/event" >/dev/null

cflags=(--target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wl,--strip-all)

http_component() { # source output adapter
  clang "${cflags[@]}" -I"$work/proxy" -o "$work/core.wasm" "$1" "$work/proxy/proxy.c" "$work/proxy/proxy_component_type.o"
  wasm-tools component new "$work/core.wasm" --adapt "wasi_snapshot_preview1=$adapters/wasi_snapshot_preview1.$3.wasm" -o "$2"
  echo "built $2 ($(wc -c < "$2") bytes)"
}
event_component() { # source output
  clang "${cflags[@]}" -I"$work/event" -o "$work/core.wasm" "$1" "$work/event/event_function.c" "$work/event/event_function_component_type.o"
  wasm-tools component new "$work/core.wasm" --adapt "wasi_snapshot_preview1=$adapters/wasi_snapshot_preview1.reactor.wasm" -o "$2"
  echo "built $2 ($(wc -c < "$2") bytes)"
}

# The hello example uses the proxy adapter: it imports only the wasi:http/proxy world, so it also
# runs on `wasmtime serve` without -Scli.
http_component "$root/examples/hello-http/hello.c" "$root/examples/hello-http/hello.wasm" proxy
http_component "$root/tests/fixtures/sink.c" "$root/tests/fixtures/sink.wasm" reactor
event_component "$root/examples/event-echo/echo.c" "$root/examples/event-echo/echo.wasm"
event_component "$root/tests/fixtures/faulty.c" "$root/tests/fixtures/faulty.wasm"
event_component "$root/tests/fixtures/noop.c" "$root/tests/fixtures/noop.wasm"
