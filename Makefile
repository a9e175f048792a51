# sipmask: `make run` starts it on its embedded SQLite default; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt

.PHONY: run test unit e2e bench micro lint constraints clean

# runtime dependencies only (what `make run` needs)
$(BIN)/.runtime: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(PIP) -e .
	touch $@

# plus the test toolchain (what `make test` needs)
$(BIN)/.installed: $(BIN)/.runtime
	$(PIP) -e '.[test]'
	touch $@

run: $(BIN)/.runtime
	$(BIN)/sipmask run

test: $(BIN)/.installed lint
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

# ruff, mypy --strict over the whole package, the import contracts of pyproject.toml
lint: $(BIN)/.installed
	$(BIN)/ruff check proxy loadtest tests
	$(BIN)/mypy --strict proxy
	$(BIN)/lint-imports

constraints: $(BIN)/.installed
	{ sed -n '1,3p' constraints.txt; $(BIN)/pip freeze --exclude-editable; } > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
