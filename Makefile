# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
# Python keeps what it compiles in __pycache__ (ignored by git) for every process these targets
# start. Where the environment sets PYTHONDONTWRITEBYTECODE (as this machine's does), nothing is
# kept: each node process compiled about 80 of our modules again at start (0.13 s of its 0.52 s
# of CPU), and each pytest worker its test modules.
unexport PYTHONDONTWRITEBYTECODE
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/meridian: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The editable build warns that folders named like the package may shadow it: meridian/ is it.
	PYTHONWARNINGS=ignore $(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/meridian

.PHONY: setup demo test test-fast lint jscheck bench
setup: $(BIN)/meridian

demo: setup
	$(BIN)/meridian demo

# Three pytest-xdist workers on two cores: a third fills the time the others wait on processes
# and browsers (docs/performance.md has the measurements for 2, 3 and 4). --dist loadfile keeps
# each file on one worker, so a module's shared cluster (tests/conftest.py) or installed wheel is
# built once. Serial: `.venv/bin/python -m pytest`.
test: setup lint jscheck
	$(BIN)/python -m pytest -q -n 3 --dist loadfile

# The tests that start no process and no browser (markers: pyproject.toml), for a quick loop.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not integration"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# TypeScript (pinned in package.json, installed from the npm registry) type-checks the web
# client's JavaScript from its JSDoc comments: tsconfig.json, checkJs, no output.
node_modules/.bin/tsc: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

jscheck: node_modules/.bin/tsc
	node_modules/.bin/tsc --project tsconfig.json

bench: setup
	$(BIN)/python bench/replication.py
