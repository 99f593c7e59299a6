# Two commands a newcomer needs: `make demo` and `make test`. Each works alone on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all test-fast lint setup clean

$(STAMP): pyproject.toml requirements/constraints.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch pinned to the local CPU wheel first: anything unpinned pulls a multi-GB CUDA build.
	# --no-compile, then compileall on every core: the same bytecode, in parallel (pip compiles one
	# file at a time). The bytecode must exist: with PYTHONDONTWRITEBYTECODE=1 (set on this machine)
	# nothing compiles on import, and every Ray worker would compile torch again (the test suite 990 s -> 1435 s).
	$(PY) -m pip install -q --no-compile -c requirements/constraints.txt torch==2.13.0
	$(PY) -m pip install -q --no-compile -c requirements/constraints.txt -e . -r requirements/dev.txt
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null || true  # a few vendored test files never compile; pip skips them too
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stt2v-ray render manifests/demo.yaml --output outputs/demo

# ruff (pyflakes, pycodestyle, import order, pyupgrade, bugbear) and the import contracts of docs/architecture.md
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# CI: everything but the tests marked slow (heavy duplicates of cases that still run here; every
# fault kind of tests/faults runs at least once). `make test-all` is the nightly: the whole suite.
test: lint
	$(VENV)/bin/pytest -q tests -m "not slow"

test-all: lint
	$(VENV)/bin/pytest -q tests

# No Ray cluster, no training, nothing marked slow: about 3 minutes on a shared 2-core CPU.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q tests -m "not ray and not train and not slow"

clean:
	rm -rf outputs .pytest_cache
