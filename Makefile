# The two commands: `make run` (set up everything and start the system) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint stop bench chaos setup services services-down migrate topics env unit clean browser

run: setup
	scripts/system up

stop:
	scripts/system down
	scripts/services down

# Lint first: a style or type error fails in seconds, before the services start.
test: lint env browser
	scripts/services up
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Benchmarks of the running system (starts it like `make run` when it is not up); not part of `make test`.
bench: setup
	$(PY) -m bench $(BENCH_ARGS)

# The fault suite in full (each fault longer, and a broker of a 3-node cluster) on a private stack of
# its own; `make test` runs its short form (tests/chaos/test_chaos_short.py). CHAOS_ARGS=--short etc.
chaos: $(STAMP) env
	$(PY) -m tests.chaos $(CHAOS_ARGS)

unit: $(STAMP) env
	$(PY) -m pytest -q tests/unit

# Debian's chromium and chromium-driver for the browser tests (tests/browser/), installed when missing.
browser:
	scripts/browser

# Lint, formatting and types of every Python file (configured in pyproject.toml); `make test` runs it first.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

setup: $(STAMP) env services migrate topics

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[test]'
	touch $(STAMP)

# .env (mode 0600) with a fresh random value for every secret: the services' passwords, JWT_SECRET,
# OPERATOR_TOKEN, ... Runs every time: on an existing .env it adds what is missing and replaces
# placeholders and the old well-known passwords, keeping everything else.
env:
	$(PYTHON) scripts/make-env

services: env
	scripts/services up

services-down:
	scripts/services down

migrate: $(STAMP) services
	$(PY) -m projections migrate

topics: $(STAMP) services
	$(PY) -m streams create-topics

# Run as root, PostgreSQL's cluster lives outside .data (in the folder .data/postgres.location names).
clean: stop
	loc=$$(cat .data/postgres.location 2>/dev/null || true); \
	case "$$loc" in /var/lib/messenger/?*/postgres) rm -rf "$$(dirname "$$loc")" ;; esac
	rm -rf .data $(VENV) .env
