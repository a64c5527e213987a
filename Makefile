# emoclip: `make train` runs the default study, `make test` the tests; both install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install train test test-fast lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## make .venv and install emoclip with its test extras

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[test]"
	touch $(STAMP)

# emoclip-train runs the default study (conf/experiment/demo.yaml), as here, also with ARGS that
# only adjust it (seed=1); ARGS that choose model=, data= or experiment= run what they name.
train: $(STAMP) ## run the default study (about 36 s on 2 cores; README "Set-up"); ARGS= gives your own overrides
	$(BIN)/emoclip-train $(ARGS)

# One worker per CPU core (pytest-xdist). --dist loadgroup: the tests of a file that share a
# module-scoped fixture (trained runs; the README's commands, run in order) stay together on
# one worker, every other test goes to whichever worker is free (tests/conftest.py).
# Times: README "Tests" (measured on 2 cores).
test: $(STAMP) ## run the tests (CPU; 6.2 min on 2 cores, README "Tests")
	$(BIN)/pytest -n auto --dist loadgroup $(ARGS)

test-fast: $(STAMP) ## the inner loop: the tests not marked slow (2.8 min on 2 cores)
	$(BIN)/pytest -n auto --dist loadgroup -m "not slow" $(ARGS)

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check emoclip tests bench
	$(BIN)/ruff format --check emoclip tests bench

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix emoclip tests bench
	$(BIN)/ruff format emoclip tests bench

clean: ## remove run folders and caches (keeps .venv)
	rm -rf outputs/*/ outputs/.cache .pytest_cache .ruff_cache
