# rbm-edge: `make dev` runs the Worker locally, `make test` runs every test.
# Both install what is missing first (scripts/setup.sh: idempotent, quiet when done).

SHELL := /bin/bash
export CLOUDFLARE_CF_FETCH_ENABLED := false
export WRANGLER_SEND_METRICS := false

.PHONY: setup build dev test test-unit lint test-integration bench fuzz soak clean

setup:
	@bash scripts/setup.sh

# Rebuilds only when sources changed (worker-build is not incremental on its own).
build/index_bg.wasm: $(shell find src -name '*.rs') Cargo.toml Cargo.lock | setup
	@bash scripts/build.sh

build: setup build/index_bg.wasm

# The same Worker with the `fault-injection` feature (src/faults.rs), for the fault tests only;
# its own target dir so the two builds don't invalidate each other.
build-faults/index_bg.wasm: $(shell find src -name '*.rs') Cargo.toml Cargo.lock | setup
	@CARGO_TARGET_DIR=target/faults bash scripts/build.sh --no-opt --out-dir build-faults . --features fault-injection

# Local Worker on http://127.0.0.1:8787 in workerd (wrangler dev), local KV and Queues
# under .wrangler/, plus the local RBM simulator on http://127.0.0.1:8788 (sim/) wired to it;
# Ctrl-C stops both. wrangler runs the build itself ([build] in wrangler.toml). Only the Worker
# runs when .dev.vars sets RBM_API_BASE elsewhere (say Google's). See scripts/dev.mjs.
dev: setup
	@node scripts/dev.mjs

# The local RBM simulator alone (keys and client token from .dev.vars), posting webhooks to
# http://127.0.0.1:8787/webhook. `node sim/main.mjs --help` for ports and timings.
.PHONY: sim
sim: setup
	@node sim/main.mjs

# The simulator alone, the Worker ↔ simulator loop, and make dev's script end to end (tests/sim/).
.PHONY: test-sim
test-sim: build
	node --test --test-concurrency=1 tests/sim/

# Everything: lint, native unit tests of the core, then the Worker in workerd over HTTP.
test: build lint test-unit test-integration test-sim test-browser

lint: setup
	cargo fmt --check
	cargo clippy --quiet --all-targets -- -D warnings
	cargo clippy --quiet --target wasm32-unknown-unknown -- -D warnings

test-unit: setup
	cargo test --quiet

test-integration: build build-faults/index_bg.wasm
	node --import ./tests/support/openapi-hook.mjs --test --test-concurrency=1 tests/fakes/ tests/openapi/ tests/integration/

# The console page (public/) in headless Chromium (Debian's, installed by scripts/setup-browser.sh)
# against the Worker with its static assets, Queues and the RBM simulator (tests/browser/);
# screenshots in tests/browser/out/.
.PHONY: test-browser
test-browser: build
	@bash scripts/setup-browser.sh
	node --test --test-concurrency=1 tests/browser/

# Throughput, latency, CPU per request and cold start of the release build in workerd
# (no wrangler proxy); writes bench/results.json. Not part of `make test`.
bench: build
	node bench/run.mjs

# Coverage-guided fuzzing of the pure core (nightly + cargo-fuzz, installed on first use).
# FUZZ_SECONDS per target (default 60).
fuzz: setup
	bash scripts/fuzz.sh

# 10 000 receipts, 20 % duplicated, shuffled, 32 connections; checks no status is lost.
soak: build
	node tests/soak/soak.mjs

clean:
	rm -rf build build-faults target .wrangler bench/out
