# Fiscal e-bill engine. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard protos/*/v1/*.proto)

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## Create the local virtualenv with every dependency

SYSTEM := $(VENV)/.system
$(SYSTEM): ops/debian-packages.txt ops/system-deps.sh | $(STAMP)
	bash ops/system-deps.sh
	touch $(SYSTEM)

system: $(SYSTEM) ## Install the Debian packages of ops/debian-packages.txt that are missing

run: $(STAMP) $(SYSTEM) ## Start the whole stack on embedded defaults and issue demo bills
	$(VENV)/bin/ebill run --demo $${DEMO:-500}

test: $(STAMP) $(SYSTEM) ## Run every test: unit, storage and end-to-end (CI)
	$(PY) -m pytest -q

test-fast: $(STAMP) ## Unit and storage tests only (no Ray, no sandboxes; under a minute)
	$(PY) -m pytest -q tests/unit tests/storage

test-e2e: $(STAMP) $(SYSTEM) ## End-to-end tests on the whole stack (PostgreSQL, Ray, sandboxes)
	$(PY) -m pytest -q tests/e2e

protos: $(STAMP) ## Regenerate Python code (+ .pyi stubs) from protos/
	$(PY) -m ops.protogen

fmt: $(STAMP) ## Format and fix what ruff can fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy engine config wire storage clients actors usecases ebill ops bench

bench: $(STAMP) ## Benchmark batch and single issuance against the embedded stack
	$(PY) -m bench.issuance

bench-delivery: $(STAMP) ## Batch issuance with delivery on vs off, alternating (ratio, target >= 0.95)
	$(PY) -m bench.delivery

bench-auth: $(STAMP) ## Benchmark issuance with authentication on and off, alternating in one run
	$(PY) -m bench.auth

bench-security: $(STAMP) ## Issuance with TLS + authentication + transparency log all on vs all off, alternating (ratio, target >= 0.90)
	$(PY) -m bench.security

bench-lifecycle: $(STAMP) ## Benchmark red-flush, paper conversion and stock checks
	$(PY) -m bench.lifecycle

bench-fiscal: $(STAMP) ## Fiscal sandbox CountersignBatch: SM2 on every core vs in turn (ratio, one run, no stack)
	$(PY) -m bench.fiscal_sandbox

bench-mapping: $(STAMP) ## What resolving HIS codes through the mapping costs validation (ratio, one run)
	$(PY) -m bench.mapping

bench-history: $(STAMP) ## History import: BILLS=1000000 bills/s, then the re-run importing nothing
	$(PY) -m bench.history --bills $(or $(BILLS),1000000)

bench-sealing: $(STAMP) ## Cost of sealing personal data: reserve stage A/B (BEFORE=dir: whole engine too)
	$(PY) -m bench.sealing $(if $(BEFORE),--engine-before $(BEFORE))

bench-render: $(STAMP) ## Benchmark PDF, H5 and notice rendering, and the PDF cache's effect
	$(PY) -m bench.render

bench-gateway: $(STAMP) ## Locust HTTP profile: single bills over the vendor gateway vs gRPC at the same offered load, one run, ratio
	$(PY) -m bench.locust_gateway

bench-gateway-harness: $(STAMP) ## The same comparison with the asyncio harness (closed loop, one connection per caller)
	$(PY) -m bench.gateway

bench-search: $(STAMP) ## Bill search over BILLS bills it generates (default 10 million; kept in var/)
	$(PY) -m bench.search --bills $(or $(BILLS),10000000)

bench-console: $(STAMP) ## Console under Locust users: make bench-console USERS=100,300,1000
	$(PY) -m bench.locust_console --users $(or $(USERS),100,300,1000)

chaos: $(STAMP) ## Randomized fault run: make chaos SECONDS=300 SEED=7 (exit 1 on any violation)
	$(PY) -m bench.chaos --seconds $(or $(SECONDS),120) $(if $(SEED),--seed $(SEED))

clean: ## Remove the virtualenv and local data
	rm -rf $(VENV) var

.PHONY: help venv system run test test-fast test-e2e protos fmt lint bench bench-fiscal bench-lifecycle bench-sealing bench-delivery bench-mapping bench-render bench-auth bench-security bench-history bench-gateway bench-gateway-harness bench-search bench-console chaos clean
