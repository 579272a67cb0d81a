# leadflow: `make run` starts the whole stack on this machine, `make test` runs the tests.
# Both need only Python 3.11 and git: the first call builds .venv from pyproject.toml.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
# Reinstall only when pyproject.toml changes.
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv run run-pg test lint bench bench-e2e clean-data

help:
	@echo "make run         start Temporal dev server, worker, API and SMTP sink (data in .data/)"
	@echo "make run-pg POSTGRES=postgresql://...  the same, scaled out: store on PostgreSQL, 2 workers, 2 API processes"
	@echo "make test        run the test suite (PYTEST_ARGS='-k sink' to narrow it)"
	@echo "make lint        ruff check, ruff format --check and mypy"
	@echo "make bench       run the scripts in bench/ (bench/README.md says what each measures)"
	@echo "make bench-e2e   leadflow through HTTP against the bare engine, one run (PROFILE=dir: py-spy too)"
	@echo "make clean-data  delete .data/ (Temporal history, store, dev keys, mail)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 not found: install python3.11 (or set PYTHON=...)" >&2; exit 1; }
	@# A venv whose interpreter is gone (Python upgraded or removed) is rebuilt, not patched.
	@$(PY) -c "" 2>/dev/null || $(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

run: $(STAMP)
	$(PY) -m devstack.run

# Production's shape on one machine (README "Production"): the database must exist.
run-pg: $(STAMP)
	@test -n "$(POSTGRES)" || { echo "usage: make run-pg POSTGRES=postgresql://user:password@127.0.0.1:5432/leadflow" >&2; exit 1; }
	$(PY) -m devstack.run --postgres "$(POSTGRES)" --workers 2 --api-processes 2

test: $(STAMP)
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	@# The peer rule libraries compared in bench/rules_*.py are an optional extra.
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev,bench]'
	@set -e; for f in bench/*_bench.py bench/*_errors.py; do \
		[ -e "$$f" ] || { echo "no benchmarks in bench/"; break; }; \
		echo "== $$f"; $(PY) "$$f"; \
	done

# What a user pays end to end (starts its own stack on free ports; bench/README.md has the latest figures).
bench-e2e: $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev,bench]'
	$(PY) bench/e2e_bench.py $(if $(PROFILE),--profile $(PROFILE))

# Named explicitly, so no prompt: everything make run created goes (keys too: lead ids change).
clean-data:
	@pid=$$(sed -n 's/.*"launcher": *\([0-9][0-9]*\).*/\1/p' .data/pids.json 2>/dev/null); \
	if [ -n "$$pid" ] && kill -0 "$$pid" 2>/dev/null; then \
		echo "make run (pid $$pid) is using .data: stop it first" >&2; exit 1; fi
	rm -rf -- .data
