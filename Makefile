# natpool: `make run` (the main job) and `make test` (every check) work on a fresh clone.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTHON ?= python3
HYPOTHESIS_PROFILE ?= ci
export HYPOTHESIS_PROFILE

.PHONY: run simulate test venv develop lint rust-lint rust-test py-lint stubtest pytest clean

run: develop
	$(BIN)/natpool demo

simulate: develop
	$(BIN)/natpool simulate

test: develop rust-lint rust-test py-lint stubtest pytest

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

rust-test:
	cargo test

py-lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy python/natpool

stubtest: develop
	$(PY) -m mypy.stubtest natpool._natpool --mypy-config-file pyproject.toml

pytest: develop
	$(BIN)/pytest

clean:
	rm -rf $(VENV) target
