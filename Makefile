# Set-up on a fresh machine: `make demo` (the main job, no download), `make test` (the tests).
# Both build .venv with the pinned CPU build of PyTorch (constraints.txt); `make demo` installs
# the package alone, `make test` adds the extras the tests, lint and docs build need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= $(abspath ../shared/data)

.PHONY: install install-dev demo test test-slow lint docs bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,bench,integrations,docs]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/sgdinfluence demo

lint: install-dev
	$(BIN)/ruff check src tests benchmarks examples docs
	$(BIN)/mypy

# the user guide and the API reference from the docstrings, warnings as errors (build/site)
docs: install-dev
	$(BIN)/mkdocs build --strict --quiet

test: lint docs
	SGDINFLUENCE_DATA=$(DATA) $(BIN)/pytest -q

test-slow: install-dev
	SGDINFLUENCE_DATA=$(DATA) $(BIN)/pytest -q -m slow

bench: install-dev
	SGDINFLUENCE_DATA=$(DATA) $(BIN)/python benchmarks/sweep_speed.py

clean:
	rm -rf $(VENV) src/*.egg-info .pytest_cache .ruff_cache build
