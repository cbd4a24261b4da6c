# The README's two commands: `make run` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-long coverage lint bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# reinstall only when the project's metadata changes
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/perception run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

# the full suite under coverage, child processes included (slower than `make test`, so apart)
coverage: $(STAMP)
	$(BIN)/python -m pytest -q --cov --cov-report=term $(ARGS)

# The fault battery at full length (docs/operations.md): the long-marked tests, then 1,000,000
# hostile messages through the wire decoder (atheris if the [fuzz] extra installs, else hypothesis).
test-long: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,fuzz]" || echo "atheris did not install: fuzzing with hypothesis"
	$(BIN)/python -m pytest -q -m long $(ARGS)
	$(BIN)/python bench/fuzz_wire.py --long

lint: $(STAMP)
	$(BIN)/ruff check perception tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/perception bench node

clean-venv:
	rm -rf $(VENV)
