# Lookout developer commands. `make` (or `make help`) lists them.
#
# Everything runs from the project's own virtualenv, .venv, which `make setup` creates
# and keeps in sync with uv.lock (the other targets call it first; it is instant when
# nothing changed).

.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
WORKERS ?= 1

.PHONY: help setup run test lint fmt demo bench bench-quick faults migrate clean

help: ## List the targets
	@echo "Usage: make <target>   (WORKERS=N make run for N worker processes)"
	@echo
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "}; {printf "  %-11s %s\n", $$1, $$2}'

setup: $(VENV)/.synced ## Create .venv and install Lookout with its dev tools from uv.lock
	@:

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: | $(BIN)/python
	$(BIN)/pip install -q 'uv==$(UV_VERSION)'

# The stamp is newer than uv.lock and pyproject.toml once they are installed.
$(VENV)/.synced: uv.lock pyproject.toml | $(BIN)/uv
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen
	@touch $@

run: setup ## Start Lookout locally: embedded PostgreSQL and broker, API, worker(s)
	$(BIN)/lookout run --workers $(WORKERS)

test: setup ## Run the tests (they start their own PostgreSQL and broker)
	$(BIN)/pytest -q

lint: setup ## Check formatting, lint and types (ruff, mypy)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

fmt: setup ## Format the code and apply ruff's safe fixes
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

demo: setup ## Publish the NLGN scenario to a running `make run` and show the alert
	$(BIN)/lookout demo

bench: setup ## Run every benchmark at full size (20-40 min); writes results.json, BENCHMARKS.md
	$(BIN)/python -m benchmarks.run

bench-quick: setup ## The same benchmarks at small sizes (under 2 min); results-quick.json
	$(BIN)/python -m benchmarks.run --quick

faults: setup ## Fault harness, long form: 50,000 events, 20+ worker kills, outages; checks vs the oracle
	$(BIN)/python -m benchmarks.faults --events 50000 --kills 24 --seed 7 --results

migrate: setup ## Apply database migrations (LOOKOUT_DATABASE_URL or the running stack)
	$(BIN)/lookout migrate

clean: ## Delete local state (.lookout/: database, logs) and caches; keeps .venv
	@if [ -e .lookout/stack.lock ] && ! flock -n .lookout/stack.lock true; then \
		echo "a \`lookout run\` is using .lookout/: stop it (Ctrl-C) first" >&2; \
		exit 1; \
	fi
	rm -rf .lookout .pytest_cache .ruff_cache .mypy_cache .hypothesis build dist *.egg-info src/*.egg-info
	find src tests -name __pycache__ -type d -prune -exec rm -rf {} +
