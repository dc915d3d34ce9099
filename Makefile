# One Makefile for people and CI. Every target sets itself up (virtualenv, install, data).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VAR ?= var
PACKAGES := lez loader server clients div_standin
PROTO := proto/lez/api/v1/access.proto

RUN_PLATES ?= 300000
BENCH_PLATES ?= 8000000

.PHONY: install tools gen gen-check buf-lint check lint test test-slow test-all run bench bench-quick \
        bench-build data clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py lez/_hmac.c lez/_lookup.c lez/_enrich.c lez/_sort.c lez/_buffers.h | tools
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[server,loader,dev,bench]"
	@touch $(STAMP)

# Debian packages: lmdb-utils (mdb_stat, used by the tests to prove the store is a standard
# LMDB), gcc and libssl-dev (the native cores, compiled by the install).
tools:
	@missing=""; \
	command -v mdb_stat >/dev/null || missing="$$missing lmdb-utils"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	[ -f /usr/include/openssl/sha.h ] || missing="$$missing libssl-dev"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; \
	  else echo "missing Debian packages:$$missing (apt-get install them)"; fi; \
	fi

gen: install
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. \
	  --mypy_out=. --mypy_grpc_out=. $(PROTO)

# buf (npm package @bufbuild/buf) lints the contract against buf.yaml.
buf-lint:
	npx --yes @bufbuild/buf lint

gen-check: gen
	@git diff --exit-code -- lez/api || { echo "generated code drifted: run 'make gen' and commit"; exit 1; }

lint: install
	$(BIN)/ruff format $(PACKAGES) tests bench
	$(BIN)/ruff check --fix $(PACKAGES) tests bench

check: install
	$(BIN)/ruff format --check $(PACKAGES) tests bench
	$(BIN)/ruff check $(PACKAGES) tests bench
	$(BIN)/mypy $(PACKAGES) bench
	@if [ -f $(PROTO) ]; then $(MAKE) -s gen-check; fi

test: install
	$(BIN)/pytest -q

test-slow: install
	$(BIN)/pytest -q -m slow

test-all: test test-slow

# The main job on the embedded default register (see README).
run: install
	$(PY) -m clients.demo --var $(VAR) --plates $(RUN_PLATES)

bench: install
	$(PY) -m bench.run --plates $(BENCH_PLATES) --runs 5 --out bench/results

bench-quick: install
	$(PY) -m bench.run --quick --out $(VAR)/bench-quick

bench-build: install
	$(PY) -m bench.build_bench --plates $(BENCH_PLATES) --runs 3

clean:
	rm -rf $(VAR) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
