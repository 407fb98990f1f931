# tilefn — two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 50051
# Prometheus metrics of `make run` (docs/operations.md); 0 turns them off.
METRICS_PORT ?= 9464
DATA   ?= data
# The state database (tokens, namespaces, registered UDFs, tasks) and the development token
# `make run` creates once for user `demo` (every scope but admin; see docs/SECURITY.md).
STORE  ?= state/tilefn.sqlite3
DEV_TOKEN ?= state/dev-token
# strict: refuse to run unless every sandbox layer works (needs root on Linux x86-64);
# degraded: run with whatever isolation the machine allows (see docs/SECURITY.md).
SANDBOX ?= strict
# Servers `make replicas` starts, on ports PORT, PORT+1, ...
REPLICAS ?= 3
# Reinstall when dependencies change or modules are added/removed (strict editable installs
# link each file, so a new module needs a reinstall).
PKG_DIRS := protos/tilefn protos/tilefn/v1 codec sandbox server client
STAMP    := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# The Node.js example client's own dependencies (grpc-js, proto-loader, apache-arrow), for its test.
NODE_EXAMPLE := examples/node
NODE_EXAMPLE_STAMP := $(NODE_EXAMPLE)/node_modules/.installed

.PHONY: help install run replicas test bench protos lint typecheck check clean

help:
	@echo "make run        install, create demo arrays in $(DATA)/ and a token in $(DEV_TOKEN), start a server on $(HOST):$(PORT)"
	@echo "make replicas   like run, but REPLICAS ($(REPLICAS)) servers on ports $(PORT)... sharing one store"
	@echo "make test       install, then run every test"
	@echo "make bench      tilefn against its yardsticks (echo, Ray, Flight, tiledb-py, spawn), task graphs vs Ray: ~4 min"
	@echo "make loadtest   load-test the server of \`make run\` (1-2 min): report + plot in loadtest/out/"
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

$(NODE_EXAMPLE_STAMP): $(NODE_EXAMPLE)/package.json $(NODE_EXAMPLE)/package-lock.json
	cd $(NODE_EXAMPLE) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: $(STAMP)
	@$(PY) -m tilefn.server.demo --data-root $(DATA) --store $(STORE) --token-file $(DEV_TOKEN)
	@echo
	@echo "Starting tilefn on $(HOST):$(PORT), authentication on. From another terminal, try:"
	@echo
	@echo "  export TILEFN_TOKEN=\$$(cat $(DEV_TOKEN))"
	@echo "  $(PY) -c 'from tilefn.client import Client; print(Client(\"$(HOST):$(PORT)\").exec(lambda n: n * 2, 21))'"
	@echo "  $(PY) -c 'from tilefn.client import Client; print(Client(\"$(HOST):$(PORT)\").arrays())'"
	@echo "  $(VENV)/bin/tilefn exec examples/hello.py --arg 5 --target $(HOST):$(PORT)"
	@echo
	@echo "More users and tokens: TILEFN_STORE=$(STORE) $(VENV)/bin/tilefn token create NAME --create-namespace"
	@echo "Stop with Ctrl-C (in-flight calls are drained first)."
	@echo
	$(PY) -m tilefn.server --host $(HOST) --port $(PORT) --data-root $(DATA) --store $(STORE) \
		--sandbox $(SANDBOX) --metrics-port $(METRICS_PORT)

# Several replicas on one machine sharing the store and the results folder, called through one
# ipv4: target with round robin (docs/DEPLOY.md, "Replicas sharing a store"). Ctrl-C drains all.
replicas: $(STAMP)
	@$(PY) -m tilefn.server.demo --data-root $(DATA) --store $(STORE) --token-file $(DEV_TOKEN)
	@echo "Starting $(REPLICAS) replicas; in the calling terminal: export TILEFN_TOKEN=\$$(cat $(DEV_TOKEN))"
	@PY=$(PY) HOST=$(HOST) PORT=$(PORT) REPLICAS=$(REPLICAS) DATA=$(DATA) STORE=$(STORE) \
		SANDBOX=$(SANDBOX) scripts/replicas.sh

test: $(STAMP) $(NODE_STAMP) $(NODE_EXAMPLE_STAMP)
	$(PY) -m pytest

# The benchmark-only yardsticks (ray; Flight ships in pyarrow) get a stamp of their own, so
# `make test` never installs them. Suite: bench/run.py; methodology: docs/PERFORMANCE.md.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt \
		--config-settings editable_mode=strict -e '.[dev,bench]'
	@touch $@

bench: $(BENCH_STAMP)
	$(PY) -m bench --json bench/last-run.json

# Open-model load test of a running server (start it with `make run` in another terminal): a
# constant-rate run, then a saturation search. See docs/PERFORMANCE.md, "Load test".
LOADTEST_FLAGS ?= --rate 50 --duration 20 --saturate --start-rate 30 --step-duration 4 --timeout 5
.PHONY: loadtest
# Against a `make run` server: its development token unless TILEFN_TOKEN is set.
loadtest: $(STAMP)
	TILEFN_TOKEN="$${TILEFN_TOKEN:-$$(cat $(DEV_TOKEN) 2>/dev/null)}" \
		$(PY) -m loadtest --target $(HOST):$(PORT) --out loadtest/out $(LOADTEST_FLAGS)

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
	rm -rf $(VENV) node_modules $(NODE_EXAMPLE)/node_modules build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
