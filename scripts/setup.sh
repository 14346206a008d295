#!/usr/bin/env bash
# Installs what building and testing rbm-edge needs, idempotently and quietly when done.
# Nothing here downloads from GitHub or Cloudflare: only crates.io and the npm registry.
#   - the wasm32 target
#   - worker-build, pinned (its own tool downloads are bypassed by the *_BIN variables below)
#   - wasm-bindgen-cli at exactly the version Cargo.lock pins for the wasm-bindgen crate
#   - node_modules from package-lock.json (wrangler/workerd, binaryen's wasm-opt, esbuild)
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
say() { printf 'setup: %s\n' "$*" >&2; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown >/dev/null
fi

# `worker-build --version` prints the bare version; `wasm-bindgen --version` a name first.
if ! worker-build --version 2>/dev/null | grep -qw -- "$WORKER_BUILD_VERSION"; then
  say "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install --quiet --locked worker-build --version "$WORKER_BUILD_VERSION"
fi

# The CLI must equal the wasm-bindgen crate version in Cargo.lock, or the glue mismatches.
WB_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qw -- "$WB_VERSION"; then
  say "installing wasm-bindgen-cli $WB_VERSION (a few minutes, once)"
  # --locked first; its lockfile can pin a crate the registry no longer serves (seen with
  # webpki-roots), in which case a fresh resolution within the same semver ranges works.
  cargo install --quiet --locked wasm-bindgen-cli --version "$WB_VERSION" 2>/dev/null ||
    cargo install --quiet --force wasm-bindgen-cli --version "$WB_VERSION"
fi

# npm ci when node_modules is missing or older than the lockfile.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing node packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi

# .dev.vars (local secrets for make dev) from .dev.vars.example, with a local service-account key
# for the RBM simulator when it has none (openssl; never committed: .dev.vars is gitignored).
bash scripts/dev-vars.sh .dev.vars
