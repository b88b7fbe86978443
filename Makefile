# The two Quickstart commands: `make report` (the experiments report) and
# `make test` (the whole test suite). Each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out/report

.PHONY: report test lint docs bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of PyTorch, for the parity tests and benchmarks only.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test,parity,experiments,integrations,docs,lint]"
	touch $@

report: $(VENV)/.installed
	$(PY) -m experiments all --quick --out $(OUT)

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check decaytx experiments tests examples docs/_hooks
	$(VENV)/bin/pyright decaytx

docs: $(VENV)/.installed
	$(VENV)/bin/mkdocs build --strict

bench: $(VENV)/.installed
	$(PY) -m experiments bench --quick --out $(OUT)

clean:
	rm -rf $(VENV) out site
