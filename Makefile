# Two commands: `make run` and `make test`. Everything else builds on .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt check bench bench-extract bench-match clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/monitor -c feeds.yaml run

check: $(STAMP)
	$(BIN)/monitor -c feeds.yaml check

lint: $(STAMP)
	$(BIN)/ruff format --check monitor tests benchmarks
	$(BIN)/ruff check monitor tests benchmarks
	$(BIN)/mypy monitor

fmt: $(STAMP)
	$(BIN)/ruff format monitor tests benchmarks
	$(BIN)/ruff check --fix monitor tests benchmarks

test: lint
	$(BIN)/pytest -q

bench-match: $(STAMP)
	$(BIN)/python benchmarks/bench_match.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
