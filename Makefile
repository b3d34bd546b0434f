# The Makefile is the interface; CI (.ci/run) calls the same targets.
SHELL := /bin/bash
# A target directory outside the clone keeps repeated clean-clone builds incremental.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/usage-intel/target
export CARGO_TERM_COLOR ?= never

.PHONY: run test browser-deps test-unit lint fmt clippy bench bench-lambda fuzz fuzz-api build deploy tenant key import clean-venvs backtest demo

## Start moto + every function locally on http://127.0.0.1:8080 (Ctrl-C stops all).
run:
	infra/local/run.sh

## Every test: the moto launcher against plain moto (ADR 0008), then unit, property,
## handler and end-to-end (against a private moto enforcing IAM, ADR 0010), then the
## check that every action the template grants was used by those tests.
IAM_LOG ?= $(or $(TMPDIR),/tmp)/usage-intel-iam-$(shell echo $$PPID).jsonl
test: browser-deps
	@# The launcher's pytest (and the moto venv it installs) runs while the workspace
	@# compiles; one build graph makes every test binary and the CLI the coverage step runs.
	@log=$$(mktemp); infra/local/test-moto.sh > "$$log" 2>&1 & launcher=$$!; \
	  cargo build --workspace --lib --tests --bin usage-local --locked; built=$$?; \
	  wait $$launcher; launched=$$?; cat "$$log"; rm -f "$$log"; \
	  [ $$built -eq 0 ] && [ $$launched -eq 0 ]
	MOTO_LAUNCHER_IAM_LOG=$(IAM_LOG) infra/local/with-moto.sh cargo test --workspace --lib --bins --tests --locked
	@# The binary built above: `cargo run -p local` would resolve features for that package
	@# alone and rebuild part of the tree (~60 s from a fresh target).
	"$(CARGO_TARGET_DIR)/debug/usage-local" iam-coverage $(IAM_LOG)
	rm -f $(IAM_LOG)

## What the browser tests need: chromium + chromedriver (Debian packages, installed by
## .ci/run; the test fails with how to install them when missing) and axe-core (npm).
browser-deps:
	@[ -f tests/axe/node_modules/axe-core/axe.min.js ] || (cd tests/axe && npm ci --no-audit --no-fund --silent)

## Pure tests only (no emulator needed).
test-unit:
	cargo test --workspace --lib --locked

## fmt + clippy + cfn-lint on the template + openapi-spec-validator on docs/openapi.json
## (and proof both reject broken copies).
lint: fmt clippy
	infra/lint.sh

fmt:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets --locked -- -D warnings

## Benchmarks (figures named in the issues), against a private moto.
bench:
	infra/local/with-moto.sh cargo bench --locked -p e2e --bench pipeline
	# Issue #16: a bounded soak (SOAK_SECONDS, default 300) with kills, crashes, duplicates,
	# late events and poison messages; its own private moto, so its peak RSS is the soak's.
	infra/local/with-moto.sh cargo bench --locked -p e2e --bench soak
	# A second private moto: it keeps memory from the first bench's tables.
	infra/local/with-moto.sh cargo bench --locked -p e2e --bench entitlements
	# Health scoring: pure, against a simulated store (no emulator needed).
	cargo bench --locked -p e2e --bench health
	# Issue #6: audit job on a simulated store, and import throughput (no emulator).
	cargo bench --locked -p e2e --bench audit
	# Issue #12: cockpit page render times and bytes, 10,000 scored accounts (no emulator).
	cargo bench --locked -p e2e --bench cockpit

## Issue #13: each Lambda artifact's init time (spawn to the first Runtime API request,
## median of 15) and stripped size, built for this machine with the size-oriented `lambda`
## profile. Kept out of `make bench`: a cold fat-LTO build of the seven functions takes
## hours on 2 cores (docs/benchmarks.md).
bench-lambda:
	ARCH=x86_64 infra/build.sh
	python3 infra/bench-lambda.py

## Fuzz the HubSpot webhook parsers for FUZZ_SECONDS (default 60) with cargo-fuzz/libFuzzer.
## The stable toolchain is enough: RUSTC_BOOTSTRAP=1 unlocks the sanitizer flags it ships.
FUZZ_SECONDS ?= 60
fuzz:
	infra/fuzz.sh $(FUZZ_SECONDS)

## Fuzz the HTTP contract (docs/openapi.json) with schemathesis against a private local
## stack for FUZZ_API_SECONDS (default 150): no 5xx, no response the document contradicts.
FUZZ_API_SECONDS ?= 150
fuzz-api:
	FUZZ_API_SECONDS=$(FUZZ_API_SECONDS) infra/fuzz-api.sh

## Lambda artifacts, profile `lambda` (ARCH=arm64 default, cargo-lambda + zig; ARCH=x86_64: host cargo).
build:
	infra/build.sh

deploy:
	infra/deploy.sh

## Admin against the running local stack: make tenant T=acme / make key T=acme
tenant:
	AWS_ENDPOINT_URL=$${AWS_ENDPOINT_URL:-http://127.0.0.1:$${MOTO_PORT:-4566}} cargo run --quiet -p local --bin usage-local -- tenant create $(T)
key:
	AWS_ENDPOINT_URL=$${AWS_ENDPOINT_URL:-http://127.0.0.1:$${MOTO_PORT:-4566}} cargo run --quiet -p local --bin usage-local -- key create $(T)

## Health-score backtest on generated accounts with known churn (ARGS="--fit --accounts 5000").
backtest:
	cargo run --quiet --locked -p local --bin usage-local -- backtest $(ARGS)

## Load generated demo accounts (a quarter decaying) into the running local stack.
demo:
	AWS_ENDPOINT_URL=$${AWS_ENDPOINT_URL:-http://127.0.0.1:$${MOTO_PORT:-4566}} cargo run --quiet --locked -p local --bin usage-local -- demo $(ARGS)
## Import history: make import T=dev F=history.jsonl [ARGS=--dry-run]
import:
	AWS_ENDPOINT_URL=$${AWS_ENDPOINT_URL:-http://127.0.0.1:$${MOTO_PORT:-4566}} cargo run --quiet -p local --bin usage-local -- import $(T) $(F) $(ARGS)
