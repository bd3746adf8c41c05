# Two commands do everything on a fresh Debian machine (see README.md):
#   make demo   — virtual environment, dependencies, Mosquitto + InfluxDB, then the demo
#   make test   — the same set-up, then lint, type check and the whole test suite
# Servers are installed from Debian packages when missing (as root) and started on free
# loopback ports by the demo and by the test fixtures themselves.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ESTATES ?= 5
DURATION ?= 60

.PHONY: demo test lint servers clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	PYTHON=$(PYTHON) bash scripts/bootstrap.sh $(VENV)
	touch $@

servers: $(STAMP)
	$(BIN)/jiayuan services install

demo: servers
	$(BIN)/jiayuan demo --estates $(ESTATES) --duration $(DURATION) --report demo-report.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: servers lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .jiayuan .mypy_cache .ruff_cache .pytest_cache
