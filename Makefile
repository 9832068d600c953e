# CanaryHub: two commands.
#   make run    the embedded CanaryHub at http://127.0.0.1:8000/ (SQLite, no servers to install)
#   make test   install what the tests need, then the whole suite on SQLite and on PostgreSQL
# Extra pytest arguments: make test PYTEST_ARGS="-k audit -x"

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip --disable-pip-version-check
DEMO_PASSWORD ?= canaryhub-demo
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

# Stamps: reinstall only when pyproject.toml changes, so a second `make run` starts at once.
RUN_STAMP := $(VENV)/.canaryhub-installed
DEV_STAMP := $(VENV)/.canaryhub-dev-installed

.PHONY: help run test system-deps install install-dev lint clean

help:
	@echo "make run    start CanaryHub (web + Celery worker + beat) at http://$(HOST):$(PORT)/"
	@echo "make test   install system packages and Python deps, run the suite on SQLite then PostgreSQL"
	@echo "make lint   ruff"
	@echo "make clean  remove var/ (the embedded database, broker folder and static files)"

$(VPY):
	@echo "make: creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(VPY)
	@echo "make: pip install -e ."
	$(PIP) install --quiet -e .
	@touch $@

$(DEV_STAMP): pyproject.toml | $(VPY)
	@echo "make: pip install -e '.[dev]'"
	@start=$$(date +%s); $(PIP) install --quiet -e '.[dev]'; \
	  echo "make: Python dependencies installed in $$(( $$(date +%s) - start ))s"
	@touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)
install-dev: $(DEV_STAMP)

system-deps:
	@start=$$(date +%s); bash scripts/install-system-deps.sh; \
	  echo "make: system packages checked in $$(( $$(date +%s) - start ))s"

run: $(RUN_STAMP)
	$(VPY) manage.py migrate --noinput
	@$(VPY) manage.py seed_demo --password '$(DEMO_PASSWORD)' || { \
	  echo "make run: 'manage.py seed_demo' failed (see above); CanaryHub needs its demo users to start" >&2; exit 1; }
	$(VPY) manage.py collectstatic --noinput --verbosity 0
	@# Links in messages point at this server unless the deployment names its own address.
	HOST='$(HOST)' PORT='$(PORT)' CANARYHUB_DEMO_PASSWORD='$(DEMO_PASSWORD)' \
	  CANARYHUB_BASE_URL="$${CANARYHUB_BASE_URL:-http://$(HOST):$(PORT)}" exec $(VPY) -m canaryhub.launcher

test: system-deps $(DEV_STAMP)
	$(VPY) -m tests.harness $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(VPY) -m ruff check .

clean:
	rm -rf var/
