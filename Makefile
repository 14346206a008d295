# rbm-edge: `make dev` runs the Worker locally, `make test` runs every test.
# Both install what is missing first (scripts/setup.sh: idempotent, quiet when done).

SHELL := /bin/bash
export CLOUDFLARE_CF_FETCH_ENABLED := false
export WRANGLER_SEND_METRICS := false

.PHONY: setup build dev test test-unit test-integration clean

setup:
	@bash scripts/setup.sh

# Rebuilds only when sources changed (worker-build is not incremental on its own).
build/index_bg.wasm: $(shell find src -name '*.rs') Cargo.toml Cargo.lock | setup
	@bash scripts/build.sh

build: setup build/index_bg.wasm

# Local Worker on http://127.0.0.1:8787 in workerd (wrangler dev), local KV under .wrangler/.
dev: build
	npx wrangler dev --ip 127.0.0.1 --port 8787 --local

test: build test-unit test-integration

test-unit: setup
	cargo test --quiet

test-integration: build
	node --test --test-concurrency=1 tests/fakes/ tests/integration/

clean:
	rm -rf build target .wrangler
