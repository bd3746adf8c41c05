# Two commands do everything on a fresh Debian machine (see README.md):
#   make demo   — virtual environment, dependencies, Mosquitto + InfluxDB, then the demo
#   make test   — the same set-up, then lint, type check and the whole test suite
#   make check  — lint, type check and the tests that need no servers (fast, no set-up of servers)
# Servers are installed from Debian packages when missing (as root) and started on free
# loopback ports by the demo and by the test fixtures themselves.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ESTATES ?= 5
DURATION ?= 60

.PHONY: demo test lint check docs servers build clean

# The hot modules run as Cython extension modules built beside their sources
# (jiayuan/compiled.py); an edited source is rebuilt here, or its stale build would run.
HOT_SOURCES := $(shell $(PYTHON) jiayuan/compiled.py)
BUILT := $(VENV)/.compiled-stamp

$(STAMP): pyproject.toml setup.py scripts/bootstrap.sh
	PYTHON=$(PYTHON) bash scripts/bootstrap.sh $(VENV)
	touch $@

# Right after an install (which builds them) nothing is stale: no second build.
$(BUILT): $(STAMP) setup.py $(HOT_SOURCES)
	if $(BIN)/python -m jiayuan.compiled --build-needed; then \
		$(BIN)/python setup.py -q build_ext --inplace; fi
	touch $@

build: $(BUILT)

servers: $(BUILT)
	$(BIN)/jiayuan services install

demo: servers
	$(BIN)/jiayuan demo --estates $(ESTATES) --duration $(DURATION) --report demo-report.json

lint: $(BUILT)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/mypy scripts/generate_docs.py

# What needs no Mosquitto or InfluxDB, without the few tests over a second (marked slow).
check: lint
	$(BIN)/pytest -q -m 'not servers and not slow'

# README's command table, protocol.md's tables and jiayuan.example.toml, from the code.
docs: $(BUILT)
	$(BIN)/python scripts/generate_docs.py

test: servers lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) build .jiayuan .mypy_cache .ruff_cache .pytest_cache
