# The two set-up commands of the README. Each creates .venv from requirements.lock on
# first use (Python 3.11), installs the package, then does its work.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: test quick bench

$(STAMP): requirements.lock pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

# Install, then run the test suite (what CI runs).
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# Install, then train and evaluate one game with the `quick` preset (a few minutes).
quick: $(STAMP)
	$(VENV)/bin/dqn train --game Breakout --preset quick --seed 0 --out results/runs/Breakout/seed0
	$(VENV)/bin/dqn evaluate --run results/runs/Breakout/seed0 --out results/eval/Breakout/seed0.h5
	$(VENV)/bin/dqn info results/eval/Breakout/seed0.h5
	@echo "Results: results/runs/Breakout/seed0 (training), results/eval/Breakout/seed0.h5 (evaluation)"

# Throughput and memory figures as JSON.
bench: $(STAMP)
	mkdir -p results/bench
	$(VENV)/bin/dqn bench | tee results/bench/bench.json
