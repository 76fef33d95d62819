# Two entry points on a fresh Debian 12 machine, as root:  make demo  and  make test.
# Both install what they need: Debian packages (when root), the project venv, Patroni's own venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PATRONI_VERSION ?= 4.1.5
APT_PACKAGES := etcd-server etcd-client openssh-server postgresql-15 python3-venv
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: deps venv patroni lint test test-fast demo testbed-up testbed-down

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:" $$missing "- run as root, or: sudo apt-get install" $$missing; exit 1; \
	  fi; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

patroni: deps venv
	$(VENV)/bin/python -m tests.testbed install-patroni --patroni-version $(PATRONI_VERSION)

# ruff (lint and format) and mypy on migrator/, configured in pyproject.toml.
lint: venv
	$(VENV)/bin/ruff check migrator && $(VENV)/bin/ruff format --check migrator && $(VENV)/bin/mypy

# Two workers, each with its own testbed (net MIGRATOR_TESTBED_NET+i, dir MIGRATOR_TESTBED_DIR-gw<i>);
# loadfile keeps each test module on one worker, as a module's tests share its testbed's state.
TEST_WORKERS ?= 2
test: deps venv patroni lint
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Unit tests only, no testbed: seconds, for the edit-test loop.
test-fast: venv lint
	$(VENV)/bin/python -m pytest -q tests/unit

demo: deps venv patroni
	VENV=$(VENV) bash examples/demo.sh

testbed-up: deps venv patroni
	$(VENV)/bin/python -m tests.testbed up

# Also the workers' testbeds, which MIGRATOR_KEEP_TESTBED=1 leaves up after a parallel run.
testbed-down: venv
	$(VENV)/bin/python -m tests.testbed down
	for i in $$(seq 0 $$(($(TEST_WORKERS) - 1))); do PYTEST_XDIST_WORKER=gw$$i $(VENV)/bin/python -m tests.testbed down; done
