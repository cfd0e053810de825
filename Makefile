# The few commands people run. Each installs into .venv first (once; again only when requirements.lock or
# pyproject.toml changes).
VENV ?= .venv
BIN := $(VENV)/bin
PY ?= python3
export PATH := $(abspath $(BIN)):$(PATH)

# Whole test files on one worker per core, at most 4, slowest files first (tests/conftest.py, SLOWEST_FILES): much of
# the suite waits on subprocesses, servers and Ray, so a second worker fills the idle core. PARALLEL= runs in one process.
PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

.PHONY: install repro test test-fast lint bench
install: $(VENV)/.installed

# Every package at the version and with the file hashes requirements.lock records (the dependencies and the test
# extra, resolved once: docs/dependencies.md), then the project itself with nothing resolved; `pip check` fails the
# install if the lock lacks something pyproject.toml requires.
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $@

repro: install          ## the main job: every stage of dvc.yaml on the embedded default data
	python -m pipeline.ray_session dvc repro   # one local Ray runtime for all the study stages

test: install           ## the whole test suite (what .ci/run runs); pytest's exit 5 (no tests) fails too
	python -m pytest -q -p no:cacheprovider $(PARALLEL) --durations=15   # the slowest tests, named at the end

test-fast: install      ## skip the end-to-end tests that start Ray, DVC and servers
	python -m pytest -q -m "not slow" $(PARALLEL)

lint: install
	ruff check pipeline stages tests benchmarks
