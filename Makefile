# natpool: `make run` (the main job) and `make test` (every check) work on a fresh clone.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3
HYPOTHESIS_PROFILE ?= ci
export HYPOTHESIS_PROFILE

.PHONY: run simulate test venv develop lint rust-lint rust-test py-lint stubtest pytest loom loom-fast stress soak scaling bench-smoke bench floor bench-workers clean

run: develop
	$(BIN)/natpool demo

simulate: develop
	$(BIN)/natpool simulate

test: develop rust-lint rust-test loom-fast py-lint stubtest bench-smoke pytest

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

# Release build of the extension, installed into the virtualenv (editable).
develop: venv
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(BIN)):$$PATH $(BIN)/maturin develop --release --quiet

rust-lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	PYO3_PYTHON=$(abspath $(PY)) cargo clippy --all-targets --features python -- -D warnings
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo clippy --release --tests -- -D warnings

rust-test:
	cargo test

# loom models of every atomic protocol in the core (the `loom` modules next to
# the code they check, src/core/*/loom.rs), built with --cfg loom in their own
# target directory. `make test` runs them with a preemption bound of 2;
# `make loom` with 3.
LOOM_TEST = RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib -- loom::

loom-fast:
	LOOM_MAX_PREEMPTIONS=2 $(LOOM_TEST)

loom:
	LOOM_MAX_PREEMPTIONS=3 $(LOOM_TEST)

# The cross-thread stress test (tests/stress.rs) for longer than `cargo test`
# runs it: NATPOOL_STRESS_OPS operations per thread, for 2, 4 and 8 threads.
NATPOOL_STRESS_OPS ?= 20000000
stress:
	NATPOOL_STRESS_OPS=$(NATPOOL_STRESS_OPS) cargo test --release --test stress -- --nocapture

# The proxy's soak (tests/soak.py, not part of `make test`): natpool proxy on loopback for SOAK_MINUTES under
# requests, resets mid-transfer, idle clients, a backend that dies and returns and a flood past
# --max-connections; checked every minute and at the end. Its report goes to stdout.
SOAK_MINUTES ?= 5
soak: develop
	$(PY) tests/soak.py --minutes $(SOAK_MINUTES)

# Do batches scale across Python threads (GIL released)? A benchmark.
scaling: develop
	$(PY) benches/gil_scaling.py

py-lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy python/natpool benches tests/soak.py

stubtest: develop
	$(PY) -m mypy.stubtest natpool._natpool --mypy-config-file pyproject.toml

pytest: develop
	$(BIN)/pytest

# The asv suite, each case run once against the installed build, results not saved:
# keeps the benchmarks from rotting (timings are never checked). It runs before pytest,
# so `make test` still closes on pytest's summary line.
bench-smoke: develop
	$(BIN)/asv machine --yes > /dev/null
	$(BIN)/asv run --quick --python=same --dry-run --show-stderr
	$(PY) -m benches.pair_ratio --rounds 2 --ops 100 > /dev/null

# Both suites in one go, then natpool proxy --workers 2 against --workers 1, then the report
# (docs/benchmarks/report.md and its charts).
bench: develop
	mkdir -p target && cut -d' ' -f1-3 /proc/loadavg > target/bench-load-before.txt
	cargo bench --bench core --bench memory --bench threads
	NATPOOL_FLOOR_OUT=target/bench-floor.json cargo test --release --lib the_floor_timed -- --ignored
	$(BIN)/asv machine --yes > /dev/null
	$(BIN)/asv run --python=same --set-commit-hash=$$(git rev-parse HEAD) --show-stderr
	$(PY) -m benches.pair_ratio --out target/bench-pair-ratio.json
	cut -d' ' -f1-3 /proc/loadavg > target/bench-load-after.txt
	$(PY) benches/proxy_workers.py --out target/bench-proxy-workers.json
	$(PY) -m benches.report

# The Rust pair beside its protocol floor, the anchors and a clock read, interleaved (src/core/pool/floor.rs;
# about 5 s after the build); make bench runs it too.
floor:
	cargo test --release --lib the_floor_timed -- --ignored --nocapture

# natpool proxy --workers 2 against --workers 1 on a loopback load, alone (about 10 s); make bench runs it too.
bench-workers: develop
	$(PY) benches/proxy_workers.py --out target/bench-proxy-workers.json

clean:
	rm -rf $(VENV) target
