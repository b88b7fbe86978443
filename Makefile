# The two Quickstart commands: `make report` (the experiments report) and
# `make test` (the whole test suite). Both use .venv, created on first use; each
# installs only what it needs, once (one stamp file per set of packages).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q
OUT ?= out/report
# PyTorch (parity tests, benchmarks) as its CPU wheel: this index serves the
# "+cpu" build, which pip prefers over PyPI's CUDA build of the same version.
# Where the wheel is already on a local index or find-links, `TORCH_PIP_ARGS=`.
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?= --extra-index-url https://download.pytorch.org/whl/cpu

.PHONY: report test lint docs bench dist clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

# decaytx, jax, optax, scikit-learn, matplotlib, tqdm, mnist1d: no torch, no tools.
$(VENV)/.report: pyproject.toml Makefile | $(PY)
	$(PIP) -e ".[experiments]"
	touch $@

# The test and parity extras (torch, keras) and everything else the tests import:
# flax/equinox/orbax (integrations), the experiments, and mkdocs (the site tests).
$(VENV)/.test: pyproject.toml Makefile | $(PY)
	$(PIP) "$(TORCH)" $(TORCH_PIP_ARGS)
	$(PIP) -e ".[test,parity,integrations,experiments,docs]"
	touch $@

$(VENV)/.lint: pyproject.toml Makefile | $(PY)
	$(PIP) -e ".[lint]"
	touch $@

$(VENV)/.release: pyproject.toml Makefile | $(PY)
	$(PIP) -e ".[release]"
	touch $@

$(VENV)/.docs: pyproject.toml Makefile | $(PY)
	$(PIP) -e ".[docs]"
	touch $@

report: $(VENV)/.report
	$(PY) -m experiments all --quick --out $(OUT)

# Progress as tests done / collected ("[ 812/1690]"): with -n 2 pytest cannot
# print file names without -v, which lists every test. pytest's own summary
# line stays last.
test: $(VENV)/.test
	@echo "make test: the whole suite on 2 workers (pytest -n 2), about 5 to 8 min on 2 idle CPU cores (installs included), longer on a busy machine"
	$(PY) -m pytest -n 2 -o console_output_style=count || { rc=$$?; [ $$rc -ne 5 ] || \
	  echo "pytest collected no tests (exit 5): check testpaths in pyproject.toml" >&2; exit $$rc; }

lint: $(VENV)/.lint
	$(VENV)/bin/ruff check decaytx experiments tests examples docs/_hooks
	$(VENV)/bin/pyright decaytx

docs: $(VENV)/.docs
	$(VENV)/bin/mkdocs build --strict
	@echo "The site is in $(CURDIR)/site/: open site/index.html in a browser (links and search work from disk),"
	@echo "or run $(VENV)/bin/mkdocs serve and open http://127.0.0.1:8000/"

# The sdist and the wheel in dist/, checked (README rendering, metadata).
dist: $(VENV)/.release
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(VENV)/bin/twine check --strict dist/*

bench: $(VENV)/.test
	$(PY) -m experiments bench --quick --out $(OUT)

clean:
	rm -rf $(VENV) out site dist build
