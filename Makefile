# Two commands a newcomer needs: `make demo` and `make test`. Each works alone on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean

$(STAMP): pyproject.toml requirements/constraints.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch pinned to the local CPU wheel first: anything unpinned pulls a multi-GB CUDA build.
	$(PY) -m pip install -q -c requirements/constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c requirements/constraints.txt -e . -r requirements/dev.txt
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stt2v-ray render manifests/demo.yaml --output outputs/demo

test: $(STAMP)
	$(VENV)/bin/pytest -q tests

clean:
	rm -rf outputs .pytest_cache
