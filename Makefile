# Set-up on a fresh machine: `make demo` (the main job, no download), `make test` (the tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= $(abspath ../shared/data)

.PHONY: install demo test test-slow lint bench clean

$(BIN)/sgdinfluence: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,bench,integrations]'
	touch $@

install: $(BIN)/sgdinfluence

demo: install
	$(BIN)/sgdinfluence demo

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	SGDINFLUENCE_DATA=$(DATA) $(BIN)/pytest -q

test-slow: install
	SGDINFLUENCE_DATA=$(DATA) $(BIN)/pytest -q -m slow

bench: install
	SGDINFLUENCE_DATA=$(DATA) $(BIN)/python benchmarks/sweep_speed.py

clean:
	rm -rf $(VENV) src/*.egg-info .pytest_cache .ruff_cache
