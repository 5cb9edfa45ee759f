# Two commands for a fresh clone: `make demo` and `make test`.
# Only python3 (>= 3.11) and make are assumed; everything else goes into .venv.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "asteps needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/asteps demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check asteps tests examples bench
	$(BIN)/ruff format --check asteps tests examples bench

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

# Every benchmark; each writes bench/results/<name>.json (batch_latency also the plot).
bench: $(VENV)/.installed-bench
	mkdir -p bench/results
	$(BIN)/python bench/overhead.py | tee bench/results/overhead.txt
	$(BIN)/python bench/s3_requests.py | tee bench/results/s3_requests.txt
	$(BIN)/python bench/s3_limit.py | tee bench/results/s3_limit.txt
	$(BIN)/python bench/batch_latency.py
	$(BIN)/python bench/s3_batch.py
	$(BIN)/python bench/batch_memory.py
	$(BIN)/python bench/peers.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
