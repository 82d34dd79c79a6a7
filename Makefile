# Public contract (see README): `make setup`, `make train`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup train test lint format clean bench-sequences

setup: $(STAMP)

# Re-installs only when the project's dependency files change, so `make train` / `make test`
# are cheap after the first run. torch goes first, pinned, so nothing can pull a CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

train: setup
	$(BIN)/engage-quickstart

# Lint first (seconds), then the docs site (seconds, no network; --strict fails on a broken
# link, anchor or docstring), then the whole suite, slow end-to-end tests included.
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir .site
	$(BIN)/python -m pytest

# The sample-building table of docs/results.md in one command: the bench extra (pandas +
# pyarrow, only for the reference implementation) on top of setup, then 1M and 10M events.
bench-sequences: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python scripts/bench_sequences.py --events 1000000 10000000

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf outputs artifacts .cache .pytest_cache .site
