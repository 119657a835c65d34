# AgentAuth developer commands. `make run` and `make test` work on a fresh clone: they create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CKSUM := $(shell cksum pyproject.toml | cut -d' ' -f1)
# `make test`: the service and the test tool-chain; `make run`: the service's runtime dependencies only.
STAMP := $(VENV)/.installed-$(CKSUM)-$(shell cat requirements/*.lock | cksum | cut -d' ' -f1)
RUN_STAMP := $(VENV)/.run-installed-$(CKSUM)-$(shell cat requirements/*.lock | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000
# pytest-xdist processes; each gets its own PostgreSQL database (tests/support.py). 2 halves CI time here.
TEST_WORKERS ?= 2

.PHONY: run test lint format bench clean lock

$(STAMP): pyproject.toml requirements/test.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/test.lock -e '.[server,test]'
	rm -f $(VENV)/.installed-* $(VENV)/.run-installed-*
	touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml requirements/run.lock
	@echo "Installing AgentAuth and its runtime dependencies into $(VENV) (first run only)..."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -c requirements/run.lock -e '.[server]'
	rm -f $(VENV)/.run-installed-*
	touch $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/agentauth serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

test: lint
	$(BIN)/pytest -n $(TEST_WORKERS)

bench: $(STAMP)
	$(BIN)/python bench/core.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# The lock files pin every package (pip constraints, so pyproject.toml still decides what is needed): `make lock`
# resolves pyproject.toml afresh in throw-away virtualenvs and rewrites them. Commit the result.
lock:
	rm -rf $(VENV)-lock && $(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet --upgrade pip
	$(VENV)-lock/bin/python -m pip install --quiet '.[server]'
	{ echo '# Pins for pip install -c (make lock rewrites this file from pyproject.toml: .[server]).'; \
	  $(VENV)-lock/bin/python -m pip freeze --exclude agentauth-id; } > requirements/run.lock
	$(VENV)-lock/bin/python -m pip install --quiet '.[server,test]'
	{ echo '# Pins for pip install -c (make lock rewrites this file from pyproject.toml: .[server,test]).'; \
	  $(VENV)-lock/bin/python -m pip freeze --exclude agentauth-id; } > requirements/test.lock
	rm -rf $(VENV)-lock
