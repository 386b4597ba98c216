# Two commands: `make demo` and `make test`. Each creates .venv if missing, reuses it while requirements.lock
# and pyproject.toml are unchanged, installs, and runs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV ?= .venv
LOCK := requirements.lock
LOCK_HASH := $(shell cat $(LOCK) pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.retrain-lock-$(LOCK_HASH)
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test install bench clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo   run the household-power slice end to end (embedded default, state in .retrain/)"
	@echo "make test   run the test suite"
	@echo "make bench  run the benchmarks in bench/"

$(STAMP): $(LOCK) pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing $(LOCK) into $(VENV) (a few minutes the first time)"
	@$(PY) -m pip install -q --disable-pip-version-check -r $(LOCK) 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@rm -f $(VENV)/.retrain-lock-*
	@touch $@

# The project itself is installed editable; reinstall when the venv was built for another checkout.
install: $(STAMP)
	@$(PY) -c "import pathlib, retrain, sys; sys.exit(pathlib.Path(retrain.__file__).resolve().parent != pathlib.Path('lib/retrain').resolve())" 2>/dev/null \
	  || $(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | { grep -v "is ignored: it is neither" || true; }

demo: install
	$(VENV)/bin/retrain demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf .retrain
