# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit test-conformance fixtures clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m runbook_lib.cli demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-conformance: $(STAMP)
	$(PY) -m pytest -m conformance -rA $(PYTEST_ARGS)

fixtures: $(STAMP)
	$(PY) -m pytest -m fixtures --regenerate-fixtures $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
