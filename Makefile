# Two commands for a fresh clone: `make demo` and `make test`.
# Only python3 (>= 3.11) and make are assumed; everything else goes into .venv.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck docs docs-build bench clean

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
	$(BIN)/ruff check asteps tests examples bench docs/render_cli.py
	$(BIN)/ruff format --check asteps tests examples bench docs/render_cli.py

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# The docs site, built strictly: a broken link, a missing reference or a page
# left out of the navigation fails. `make docs` first renders the CLI pictures
# from real runs (docs/render_cli.py), then builds into site/.
docs-build: $(VENV)/.installed-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs: $(VENV)/.installed-test
	$(BIN)/python docs/render_cli.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint typecheck docs-build
	$(BIN)/pytest

# Every benchmark; each writes bench/results/<name>.json (batch_latency also the plot).
bench: $(VENV)/.installed-bench
	mkdir -p bench/results
	$(BIN)/python bench/overhead.py | tee bench/results/overhead.txt
	$(BIN)/python bench/s3_limit.py | tee bench/results/s3_limit.txt
	$(BIN)/python bench/batch_latency.py
	cp bench/results/batch_latency.png docs/images/batch_latency.png
	$(BIN)/python bench/s3_batch.py
# Request counts and peak RSS do not depend on the machine's load: these two
# run side by side, while nothing timed runs.
	$(BIN)/python bench/s3_requests.py > bench/results/s3_requests.txt & requests=$$!; \
	  $(BIN)/python bench/batch_memory.py; memory=$$?; \
	  wait $$requests; counted=$$?; cat bench/results/s3_requests.txt; \
	  test $$memory -eq 0 -a $$counted -eq 0
	$(BIN)/python bench/peers.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info site
