# Public contract (see README): `make setup`, `make train`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The local CPU wheel; constraints.txt pins the same version (`make lock` keeps its line).
TORCH := torch==2.13.0

.PHONY: setup train test lint format clean bench-sequences lock test-latest

setup: $(STAMP)

# Re-installs only when the project's dependency files change, so `make train` / `make test`
# are cheap after the first run. torch goes first, pinned, so nothing can pull a CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

train: setup
	$(BIN)/engage-quickstart

# Lint first (seconds), then the docs site (seconds, no network; --strict fails on a broken
# link, anchor or docstring), then the whole suite, slow end-to-end tests included.
# (`make test-latest` runs the same checks with another venv.)
define checks
	$(1)/ruff check .
	$(1)/ruff format --check .
	NO_MKDOCS_2_WARNING=1 $(1)/mkdocs build --strict --quiet --site-dir .site
	$(1)/python -m pytest
endef

test: setup
	$(call checks,$(BIN))

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

# A fresh venv $(1) with the newest releases pyproject.toml allows (only torch pinned) and
# `make setup`'s extras, checked; and its frozen set less torch and ourselves, sorted, into $(2).
# `make lock` and `make test-latest` both start from it.
define fresh_venv
	rm -rf $(1)
	$(PYTHON) -m venv $(1)
	echo '$(TORCH)' > $(1)/torch.txt
	$(1)/bin/python -m pip install --quiet $(TORCH)
	$(1)/bin/python -m pip install --quiet -c $(1)/torch.txt -e '.[dev]'
	$(call frozen,$(1),$(2))
endef

define frozen
	$(1)/bin/python -m pip check
	$(1)/bin/python -m pip freeze --exclude-editable --exclude engage_seq \
		| grep -v '^torch==' | LC_ALL=C sort -f > $(2)
endef

# Rewrites constraints.txt, the full lock: what a fresh resolution of pyproject.toml installs
# today (nothing pinned but torch), in a throwaway venv. Its header (everything down to the
# torch line) is kept; then the `make setup` set (.[dev]), then what `make bench-sequences`
# adds (.[bench], installed on top under the dev pins, as that target does). The other extras
# are subsets of dev. Written to a temporary file and renamed: never half a lock.
LOCK_VENV := .venv-lock
lock:
	$(call fresh_venv,$(LOCK_VENV),$(LOCK_VENV)/dev.txt)
	cat $(LOCK_VENV)/torch.txt $(LOCK_VENV)/dev.txt > $(LOCK_VENV)/dev-and-torch.txt
	$(LOCK_VENV)/bin/python -m pip install --quiet -c $(LOCK_VENV)/dev-and-torch.txt -e '.[bench]'
	$(call frozen,$(LOCK_VENV),$(LOCK_VENV)/all.txt)
	grep -v -x -F -f $(LOCK_VENV)/dev.txt $(LOCK_VENV)/all.txt > $(LOCK_VENV)/bench.txt
	grep -q '^$(TORCH)$$' constraints.txt
	{ sed '/^torch==/q' constraints.txt; \
	  echo "# make setup (.[dev]), resolved by \`make lock\` on $$(date -u +%F) with" \
	    "$$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_implementation(), platform.python_version(), platform.system(), platform.machine())')"; \
	  cat $(LOCK_VENV)/dev.txt; \
	  echo "# make bench-sequences adds (.[bench]); not installed by make setup"; \
	  cat $(LOCK_VENV)/bench.txt; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt
	rm -rf $(LOCK_VENV)

# The scheduled check for upstream releases (weekly; CI does not run it): a fresh venv with
# the newest releases pyproject.toml allows, only torch pinned, then the same checks as
# `make test`. A failure here is an upstream release that would break us; the lock keeps CI
# green meanwhile. Prints what differs from the lock first.
LATEST := .venv-latest
test-latest:
	$(call fresh_venv,$(LATEST),$(LATEST)/latest.txt)
	sed '/^# make bench-sequences/,$$d' constraints.txt | grep -v -e '^#' -e '^torch==' \
		| LC_ALL=C sort -f > $(LATEST)/locked.txt
	diff -u --label constraints.txt --label $(LATEST) $(LATEST)/locked.txt $(LATEST)/latest.txt \
		|| true
	$(call checks,$(LATEST)/bin)

clean:
	rm -rf outputs artifacts .cache .pytest_cache .site
