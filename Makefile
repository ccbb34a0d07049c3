# Fiscal e-bill engine. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard protos/*/v1/*.proto)

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## Create the local virtualenv with every dependency

run: $(STAMP) ## Start the whole stack on embedded defaults and issue demo bills
	$(VENV)/bin/ebill run --demo $${DEMO:-500}

test: $(STAMP) ## Run the test suite (real PostgreSQL, real sandboxes, Ray)
	$(PY) -m pytest -q

protos: $(STAMP) ## Regenerate Python code (+ .pyi stubs) from protos/
	$(PY) -m ops.protogen

lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy engine config wire storage clients actors usecases ebill ops bench

bench: $(STAMP) ## Benchmark batch and single issuance against the embedded stack
	$(PY) -m bench.issuance

bench-lifecycle: $(STAMP) ## Benchmark red-flush, paper conversion and stock checks
	$(PY) -m bench.lifecycle

clean: ## Remove the virtualenv and local data
	rm -rf $(VENV) var

.PHONY: help venv run test protos lint bench bench-lifecycle clean
