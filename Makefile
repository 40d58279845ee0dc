# Two commands a new user needs: `make dev` (gateway on a local Kafka) and `make test` (everything CI runs).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: dev test lint unit kafka-jars bench bench-quick openapi clean

# Reinstalled when a compiled module changes, so the editable install rebuilds it.
$(STAMP): pyproject.toml setup.py gateway/_frames.pyx gateway/_records.pyx gateway/kafka/_rdkafka.pyx gateway/kafka/_rdkafka.h
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

kafka-jars: $(STAMP)
	$(PY) -m localkafka --fetch-only

## Run the gateway on http://127.0.0.1:8080 against a single-node Kafka it starts itself.
dev: kafka-jars
	$(PY) -m localkafka --gateway

lint: $(STAMP)
	$(VENV)/bin/ruff check gateway localkafka tests bench
	$(VENV)/bin/ruff format --check gateway localkafka tests bench
	$(VENV)/bin/mypy

## Lint, type-check and run the whole test suite against a real Kafka broker.
test: lint kafka-jars
	$(VENV)/bin/pytest

unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit

bench: kafka-jars
	$(PY) -m bench

bench-quick: kafka-jars
	$(PY) -m bench --quick

## Regenerate openapi/openapi.json from the app (a test fails when they differ).
openapi: $(STAMP)
	$(PY) -m gateway.openapi > openapi/openapi.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
