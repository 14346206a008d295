#!/usr/bin/env bash
# Release build of the Worker into build/ (index.js + index_bg.wasm), with the locally
# installed wasm-bindgen, wasm-opt (npm binaryen) and esbuild (wrangler's), so worker-build
# never tries to download them.
set -euo pipefail
cd "$(dirname "$0")/.."
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"
# The entry is built unminified, rewritten by scripts/entry.mjs (a plain default export instead
# of worker-build's per-request Proxy), then minified.
out_dir=build
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [[ ${args[i]} == --out-dir ]] && out_dir=${args[i + 1]}
done
NO_MINIFY=1 worker-build --release "$@"
node scripts/entry.mjs "$out_dir" "$ESBUILD_BIN"
