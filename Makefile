# sipmask: `make run` starts it on its embedded SQLite default; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test unit e2e bench micro lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/sipmask run

test: $(BIN)/.installed
	./scripts/system-deps.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider

unit: $(BIN)/.installed
	$(BIN)/python -m pytest -q tests/unit

e2e: $(BIN)/.installed
	./scripts/system-deps.sh
	$(BIN)/python -m pytest -q tests/e2e

micro: $(BIN)/.installed
	$(BIN)/python -m loadtest.micro

bench: $(BIN)/.installed
	../shared/bench/sipbench.sh sipmask 20000 50 -- loadtest/bench-sut

lint: $(BIN)/.installed
	$(BIN)/mypy --strict proxy/sip

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
