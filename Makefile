# The two set-up commands of the README:
#   make demo   — install the core (+ C MuJoCo) in .venv and run the main job on a local store
#   make test   — install everything (trainers, dev tools) in .venv and run the whole test suite
# constraints.txt keeps a fresh machine on the CPU torch wheel and on a jax that does not deadlock MJX.
PYTHON ?= python3
VENV   ?= .venv
PIP     = $(VENV)/bin/python -m pip
PIPFLAGS = --disable-pip-version-check -q -c constraints.txt
# pytest workers; each test file runs whole in one worker (module-scoped fixtures such as the compiled MJX
# session stay shared)
TEST_WORKERS ?= 2

.PHONY: demo test lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install $(PIPFLAGS) -e '.[sim]'
	touch $@

$(VENV)/.dev: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install $(PIPFLAGS) -e '.[dev]'
	touch $@ $(VENV)/.core

demo: $(VENV)/.core
	$(VENV)/bin/mimicdata demo demo_out --overwrite

test: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) demo_out .pytest_cache
