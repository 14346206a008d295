#!/usr/bin/env bash
# Release build of the Worker into build/ (index.js + index_bg.wasm), with the locally
# installed wasm-bindgen, wasm-opt (npm binaryen) and esbuild (wrangler's), so worker-build
# never tries to download them.
set -euo pipefail
cd "$(dirname "$0")/.."
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"
exec worker-build --release "$@"
