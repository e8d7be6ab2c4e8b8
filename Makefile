# The two set-up commands of the README. Each creates .venv from requirements.lock on
# first use (Python 3.11), installs the package, then does its work. A venv left without
# pip (Debian's python3.11 without its python3.11-venv package) is made again. PyPI's
# CUDA torch takes its CUDA wheels at the versions the image pins; a CPU torch takes none.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
CUDA_PINS := container/cuda-constraints.txt

.PHONY: test test-fast test-profile lint test-container quick bench

$(STAMP): requirements.lock pyproject.toml $(CUDA_PINS)
	test -x $(VENV)/bin/pip || $(PYTHON) -m venv --clear $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.lock -c $(CUDA_PINS)
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

# Install, then run the test suite (what CI runs), on two processes (pytest-xdist; a
# test file stays on one, see pyproject.toml). The 15 slowest tests are listed at the end:
# the suite's budget is 12 minutes on a fresh clone (docs/tests.md: where it stands).
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --durations=15

# The unit tests only, for the edit loop: no training run, workflow, cluster or image
# (tests marked slow, see pyproject.toml), in one process.
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 0 -m "not slow"

# The full suite as make test runs it, then where its CPU time went: per file and the
# costliest tests, subprocesses included (tests/cpu_profile.py; the lines in .cpu-profile/).
# The summary comes after a failed run as well; the exit status is the suite's.
test-profile: $(STAMP)
	rm -rf .cpu-profile
	DQN_CPU_PROFILE=.cpu-profile $(VENV)/bin/python -m pytest -q -n 2 -p tests.cpu_profile; \
	status=$$?; $(VENV)/bin/python tests/cpu_profile.py .cpu-profile && exit $$status

# ruff's lint and format checks (rules in pyproject.toml); CI runs it before the tests.
# `ruff format` and `ruff check --fix` make the changes they ask for. The scripts in
# Python have no .py suffix, so ruff is given them by name.
PY_SCRIPTS := $(shell grep -l '^\#!/usr/bin/env python3' scripts/*)
lint: $(STAMP)
	$(VENV)/bin/ruff check . $(PY_SCRIPTS)
	$(VENV)/bin/ruff format --check . $(PY_SCRIPTS)

# Build the container image with podman (scripts/build-container, as root) and run the
# test suite inside it; CI runs this after `make test`.
test-container: $(STAMP)
	DQN_CONTAINER_TEST=1 $(VENV)/bin/python -m pytest -q tests/test_container.py

# Install, then run the workflow with the `quick` config: Breakout and Seaquest trained,
# evaluated, Figures 2 and 3 and Table 1 drawn. The rules call `python`: the venv's.
quick: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/snakemake --cores all --configfile config/quick.yaml
	@echo "Figures: results/figures/  Tables: results/tables/  Runs: results/runs/"

# Throughput and memory figures as JSON: results/bench/cpu.json (the workflow's bench
# rule; `--config device=cuda` for a GPU's, results/bench/cuda.json).
bench: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/snakemake --cores 2 bench --config device=cpu
