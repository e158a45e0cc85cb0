# Every target does its own set-up: the virtualenv, Python packages, Kafka jars (Maven) and
# PostgreSQL (Debian's package when missing) are fetched or started by the targets that need them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv test test-unit test-integration test-e2e lint format demo up down clean

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## all tests: unit (no servers), integration (real Kafka and PostgreSQL started by the fixtures), e2e
test: $(STAMP)
	$(BIN)/pytest tests

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest tests/integration

test-e2e: $(STAMP)
	$(BIN)/pytest tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## the main job: a simulated county week through the whole backbone
demo: $(STAMP)
	$(BIN)/consortium demo $(DEMO_ARGS)

up: $(STAMP)
	$(BIN)/consortium infra up

down: $(STAMP)
	$(BIN)/consortium infra down

clean: down
	rm -rf .state
