# `make demo` and `make test` each set up .venv on a fresh machine, then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean bench

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[dev]"
	# recbole only for the MovieLens-100K files inside its wheel; never imported.
	$(PIP) install --quiet --no-deps recbole==1.2.1
	touch $(STAMP)

demo: setup
	$(PY) -m tandem.demo

test: setup
	# the suite and the docstring examples, on every core (at most 4 workers)
	$(PY) -m pytest -n auto --maxprocesses 4 --doctest-modules src/tandem tests

clean:
	rm -rf $(VENV) runs
