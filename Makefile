# The two set-up commands: `make run` (the worker) and `make test` (the whole suite).
# Both create .venv and install into it; with no REDIS_URL / DATABASE_URL they use the
# embedded default (Redis and PostgreSQL from wheels, data under .workhorse/).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[embedded,speed]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[embedded,speed,dev]"
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/workhorse run

test: $(VENV)/.installed-dev
	@scripts/check-system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

# make bench ARGS=--quick for a smoke run.
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .workhorse .pytest_cache .mypy_cache .ruff_cache
