# Two commands on a fresh machine: `make run` serves on 127.0.0.1:8000; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test setup setup-test lint loadtest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[models]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[models,test]'
	touch $@

setup: $(VENV)/.installed
	$(BIN)/gateway models pull

setup-test: $(VENV)/.installed-test
	$(BIN)/gateway models pull

run: setup
	$(BIN)/gateway serve --host $(HOST) --port $(PORT)

test: setup-test
	$(BIN)/python -m pytest

lint: setup-test
	$(BIN)/ruff check gateway tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
