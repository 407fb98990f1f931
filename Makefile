# tilefn — two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 50051
DATA   ?= data
# strict: refuse to run unless every sandbox layer works (needs root on Linux x86-64);
# degraded: run with whatever isolation the machine allows (see docs/SECURITY.md).
SANDBOX ?= strict
# Reinstall when dependencies change or modules are added/removed (strict editable installs
# link each file, so a new module needs a reinstall).
PKG_DIRS := protos/tilefn protos/tilefn/v1 codec sandbox server client
STAMP    := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: help install run test bench protos lint typecheck check clean

help:
	@echo "make run        install, create demo arrays in $(DATA)/, start a server on $(HOST):$(PORT)"
	@echo "make test       install, then run every test"
	@echo "make bench      run the benchmarks (sandbox rows so far)"
	@echo "make protos     regenerate Python code from protos/tilefn/v1/*.proto"
	@echo "make lint       ruff, buf lint, generated-code drift check"
	@echo "make typecheck  mypy --strict"
	@echo "make clean      remove the virtualenv, node_modules and caches"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt $(PKG_DIRS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt \
		--config-settings editable_mode=strict -e '.[dev]'
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: $(STAMP)
	@$(PY) -m tilefn.server.demo --data-root $(DATA)
	@echo
	@echo "Starting tilefn on $(HOST):$(PORT). From another terminal, try:"
	@echo
	@echo "  $(PY) -c 'from tilefn.client import Client; print(Client(\"$(HOST):$(PORT)\").exec(lambda n: n * 2, 21))'"
	@echo "  $(PY) -c 'from tilefn.client import Client; print(Client(\"$(HOST):$(PORT)\").arrays())'"
	@echo "  $(VENV)/bin/tilefn exec examples/hello.py --arg 5 --target $(HOST):$(PORT)"
	@echo
	@echo "Stop with Ctrl-C (in-flight calls are drained first)."
	@echo
	$(PY) -m tilefn.server --host $(HOST) --port $(PORT) --data-root $(DATA) --sandbox $(SANDBOX)

test: $(STAMP) $(NODE_STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/sandbox_bench.py --json bench/last-sandbox.json

protos: $(STAMP)
	$(PY) scripts/genprotos.py

lint: $(STAMP) $(NODE_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	cd protos && ../node_modules/.bin/buf lint
	$(PY) scripts/genprotos.py --check

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) node_modules build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
