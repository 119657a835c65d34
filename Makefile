# AgentAuth developer commands. `make run` and `make test` work on a fresh clone: they create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CKSUM := $(shell cksum pyproject.toml | cut -d' ' -f1)
# `make test`: the service and the test tool-chain; `make run`: the service's runtime dependencies only.
STAMP := $(VENV)/.installed-$(CKSUM)
RUN_STAMP := $(VENV)/.run-installed-$(CKSUM)
HOST ?= 127.0.0.1
PORT ?= 8000
# pytest-xdist processes; each gets its own PostgreSQL database (tests/support.py). 2 halves CI time here.
TEST_WORKERS ?= 2

.PHONY: run test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,test]'
	rm -f $(VENV)/.installed-* $(VENV)/.run-installed-*
	touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml
	@echo "Installing AgentAuth and its runtime dependencies into $(VENV) (first run only)..."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[server]'
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
