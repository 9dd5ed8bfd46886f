# Cascade — every command a newcomer or CI needs. `make help` lists them.
SHELL := /bin/bash
# uv from PATH, or a private copy installed on first use (a fresh machine needs only Python).
UV_VERSION := 0.9.30
UV_HOME := $(HOME)/.cache/cascade/uv-$(UV_VERSION)
UV ?= $(or $(shell command -v uv 2>/dev/null),$(UV_HOME)/bin/uv)
RUN := $(UV) run --frozen

.DEFAULT_GOAL := help
.PHONY: help sync kafka-jars lint fmt test test-unit up down demo token migrate bench-bus bench-aging topics

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(UV_HOME)/bin/uv:
	python3 -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

sync: | $(UV) ## Install the workspace (all services, the kit, dev tools) from uv.lock
	$(UV) sync --frozen

kafka-jars: sync ## Fetch Apache Kafka's jars from Maven Central into ~/.cache/cascade (once)
	$(RUN) cascade kafka fetch

lint: sync ## ruff, formatting, mypy --strict and the import contracts
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy shared/src services/*/src
	$(RUN) lint-imports

fmt: sync ## Format and autofix
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

test: kafka-jars ## Every test, against a real Apache Kafka and PostgreSQL that the tests start
	$(RUN) pytest

test-unit: sync ## Only the tests without I/O
	$(RUN) pytest -m unit

up: sync ## Start the local stack in the background (CASCADE_BROKER=embedded|apache|external)
	$(RUN) cascade up

down: ## Stop everything `make up` started
	$(RUN) cascade down

demo: sync ## Run the platform on the embedded defaults and report what it did
	$(RUN) cascade demo

token: ## Mint a token for the local stack: make token ROLE=collector
	@$(RUN) cascade token --role $(or $(ROLE),operator)

migrate: ## Apply a service's migrations: make migrate SERVICE=accounts (or all)
	$(RUN) cascade migrate $(or $(SERVICE),all)

topics: ## Create every declared topic that is missing (KAFKA_BOOTSTRAP_SERVERS)
	$(RUN) cascade topics apply

bench-bus: kafka-jars ## Benchmark: raw aiokafka vs outbox → relay → consumer → inbox (BENCH_EVENTS, _ROUNDS, _WRITERS, _WARMUP, _RATE)
	$(RUN) python -m cascade.shared.benchmarks.bus

bench-aging: kafka-jars ## Benchmark: a business-day close of 1M then 5M accounts (BENCH_ACCOUNTS, BENCH_DELINQUENT)
	$(RUN) python -m cascade.accounts.benchmarks.aging
