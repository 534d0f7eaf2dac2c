# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
HOST ?= 127.0.0.1
PORT ?= 8000
ASGI_SERVER ?= daphne
export ASGI_SERVER
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

.PHONY: run test test-fast lint deps dev-deps system-test-deps migrate clean

$(UV):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The locked dependencies (uv.lock), synced again only when the lock changes. --inexact keeps
# the dev tools in place for `make run`; bytecode is compiled once here, so that every process
# starts fast even where PYTHONDONTWRITEBYTECODE is set.
$(VENV)/.deps: uv.lock | $(UV)
	$(UV) sync --frozen --inexact --no-dev --compile-bytecode --quiet
	touch $@

$(VENV)/.dev-deps: uv.lock | $(UV)
	$(UV) sync --frozen --inexact --compile-bytecode --quiet
	touch $@ $(VENV)/.deps

deps: $(VENV)/.deps
dev-deps: $(VENV)/.dev-deps

migrate: deps
	$(PY) manage.py migrate --verbosity 0
	$(PY) manage.py setup_demo

## Serve the live board on http://$(HOST):$(PORT)/ (embedded mode: SQLite, in-memory layer, feed in process).
run: migrate
	@echo "Live board: http://$(HOST):$(PORT)/   admin: http://$(HOST):$(PORT)/admin/"
	exec $(PY) -m dashboard.serve --host $(HOST) --port $(PORT)

# Debian packages the tests drive for real: redis-server, nginx, Chromium, PostgreSQL (its
# server binaries live in /usr/lib/postgresql/N/bin) and openssl (the TLS tests' certificates).
system-test-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null || missing="$$missing nginx"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## ruff on everything, mypy --strict on the application packages.
lint: dev-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy ticker dashboard

## Install what the tests need, then run them all (lint included): two at a time (pytest-xdist),
## each module's tests in one process, so its servers start once.
test: system-test-deps dev-deps lint
	$(PY) -m pytest -n 2 --dist loadfile --cov --cov-report=term --durations=15

## The tests that start no process (no server, browser or database server): under a minute.
test-fast: dev-deps
	$(PY) -m pytest -m "not integration and not browser" -q

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache

# Benchmarks (mk/bench.mk) and the scaled topology (mk/cluster.mk) keep their own targets.
include $(wildcard mk/*.mk)
