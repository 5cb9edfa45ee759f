# Two commands for a fresh clone: `make demo` and `make test`.
# Only python3 (>= 3.11) and make are assumed. uv, the locking tool, is itself
# installed from the package registry into .tools/; everything else goes into
# .venv, exactly as uv.lock says (`uv sync --frozen`: a lock that no longer
# matches pyproject.toml fails instead of resolving anew).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9

# uv never downloads a Python of its own: it uses $(PYTHON).
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
SYNC := $(UV) sync --frozen --python $(PYTHON)

.PHONY: demo test test-latest checks lint typecheck docs docs-build pytest package \
	bench bench-instructions lock clean

$(UV):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "asteps needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet uv==$(UV_VERSION)

demo: | $(UV)
	$(SYNC) --quiet
	$(BIN)/asteps demo

# The whole suite against the lock. `checks` is the list of what runs; it takes
# BIN, so that test-latest runs the same list in another venv.
test: | $(UV)
	$(SYNC) --quiet --extra test
	$(MAKE) --no-print-directory checks BIN=$(BIN)

checks: lint typecheck docs-build pytest package

lint:
	$(BIN)/ruff check asteps tests examples bench docs/render_cli.py
	$(BIN)/ruff format --check asteps tests examples bench docs/render_cli.py

typecheck:
	$(BIN)/mypy

# The docs site, built strictly: a broken link, a missing reference or a page
# left out of the navigation fails. `make docs` first renders the CLI pictures
# from real runs (docs/render_cli.py), then builds into site/.
docs-build:
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Two passes: pytest-asyncio's auto mode would run the anyio-marked core tests'
# [trio] cases on asyncio, so they run in a second pass without it.
pytest:
	$(BIN)/pytest
	$(BIN)/pytest -p no:asyncio -m anyio -W "ignore:Unknown config option:pytest.PytestConfigWarning"

# The package as a user gets it: the sdist and the wheel built by uv's standard
# builder (the wheel from the sdist), the wheel installed into a fresh venv
# outside the repository, its runtime dependencies held to the lock's versions,
# then `asteps --version` and `asteps demo` run there.
package: | $(UV)
	rm -rf dist
	$(UV) build --quiet --out-dir dist
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  $(UV) export --quiet --frozen --no-hashes --no-emit-project --no-dev -o "$$tmp/constraints.txt"; \
	  $(UV) venv --quiet --python $(PYTHON) "$$tmp/venv"; \
	  $(UV) pip install --quiet --python "$$tmp/venv/bin/python" -c "$$tmp/constraints.txt" dist/*.whl; \
	  cd "$$tmp" && venv/bin/asteps --version && venv/bin/asteps demo > demo.txt \
	  && tail -n 3 demo.txt && echo "package: the wheel installs and runs in $$tmp/venv"

docs: | $(UV)
	$(SYNC) --quiet --extra test
	$(BIN)/python docs/render_cli.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Refresh the lock: the newest versions that pyproject.toml allows, written to
# uv.lock. Commit it with what changed; `make test` then installs it.
lock: | $(UV)
	$(UV) lock --upgrade

# The whole suite against the newest versions pyproject.toml allows, ignoring
# the lock, in a venv of its own: drift is looked at on purpose, not found by
# a fresh clone on a day nobody changed anything. Not run by .ci/run.
test-latest: | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) .venv-latest
	$(UV) pip install --quiet --python .venv-latest/bin/python --upgrade -e '.[test]'
	$(UV) pip list --python .venv-latest/bin/python --format freeze \
	  | grep -iE '^(anyio|aioboto3|botocore|moto|pydantic|pytest|pytest-asyncio)=='
	$(MAKE) --no-print-directory checks BIN=.venv-latest/bin

# Every benchmark; each writes bench/results/<name>.json (batch_latency also the plot).
bench: | $(UV)
	$(SYNC) --quiet --extra test --extra bench
	mkdir -p bench/results
	$(BIN)/python bench/overhead.py | tee bench/results/overhead.txt
	$(BIN)/python bench/s3_limit.py | tee bench/results/s3_limit.txt
# Exponential latency only: the constant-latency cells are neither goals nor plotted.
	$(BIN)/python bench/batch_latency.py --no-constant
	cp bench/results/batch_latency.png docs/images/batch_latency.png
# 1,000 workflows, not 2,000: the same rate (moto's), each side over 7 s instead of 15.
	$(BIN)/python bench/s3_batch.py --workflows 1000
# 120 steps, not 1,000: the figures per step are the same (duplicates, requests
# per executed step), in 20 s instead of three minutes.
	$(BIN)/python bench/claims.py --steps 120
# 200,000 workflows and Ctrl-C over 50,000 in full; on moto 3,000 workflows, not
# 20,000: moto's ~100 requests/s make 20,000 take three minutes more for one rate.
	$(BIN)/python bench/scale.py --s3-workflows 3000
# Request counts and peak RSS do not depend on the machine's load: these two
# run side by side, while nothing timed runs. One step per workflow: the memory
# measured grows with the ids, not the steps (bench/batch_memory.py says why).
	$(BIN)/python bench/s3_requests.py > bench/results/s3_requests.txt & requests=$$!; \
	  $(BIN)/python bench/batch_memory.py --steps 1; memory=$$?; \
	  wait $$requests; counted=$$?; cat bench/results/s3_requests.txt; \
	  test $$memory -eq 0 -a $$counted -eq 0
	$(BIN)/python bench/peers.py

# The cost of a step in instructions under callgrind (needs valgrind; a few
# minutes, so not part of `make bench`, which must stay under 10 minutes).
bench-instructions: | $(UV)
	$(SYNC) --quiet --extra test --extra bench
	$(BIN)/python bench/instructions.py

clean:
	rm -rf $(VENV) .venv-latest $(TOOLS) dist .pytest_cache .mypy_cache .ruff_cache *.egg-info site
