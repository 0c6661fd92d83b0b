# `make demo` and `make test` work from a fresh clone: both create (or reuse) .venv/.
# The venv is rebuilt only when pyproject.toml changes (the stamp file records that).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo demo-own test test-fast test-unit venv lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/demo.py

# The same loop on a project of its own (the tabular template), in .flowops/demo-own/.
demo-own: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/demo_own.py

# The whole suite in parallel workers (tests/parallel.py says what they share and what not).
# Most tests wait on subprocesses (servers, trainings, act): 3 workers keep 2 cores busy.
# `make test WORKERS=0` runs it in one process.
WORKERS ?= 3
PYTEST_PARALLEL := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadgroup --no-loadscope-reorder)

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_PARALLEL) --durations=25

# Under a minute: the unit tests, the light commands (whose subject is what they do not import)
# and the static checks of the workflows; no training, no server, no act run. For pre-commit
# (pre-push) and quick loops; `make test` stays the whole suite.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=5 tests/unit tests/integration/test_light_commands.py \
		tests/workflows/test_static.py tests/workflows/test_trust.py

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

# ruff (lint + format check) and mypy over the package; the same pinned versions as pre-commit.
lint: $(STAMP)
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) mlruns.db mlartifacts .flowops/demo data/synth report .pytest_cache
