# Two set-up commands for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench ui

$(BIN)/twin: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/twin
	$(BIN)/twin demo

test: $(BIN)/twin
	$(BIN)/pytest

bench: $(BIN)/twin
	$(BIN)/python bench/feature_pipeline.py
	$(BIN)/python bench/imports.py
	$(BIN)/python bench/crawl.py

ui: $(BIN)/twin
	$(BIN)/twin ui
