# Two commands set everything up on a fresh machine:
#   make quickstart   # venv + install + the main job on the bundled default config
#   make test         # venv + install + the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
CONSTRAINTS := .ci/constraints.txt
SOURCES := $(wildcard csrc/*/*.cpp csrc/*/*.h)

.PHONY: setup build quickstart test test-fast check format bench clean nemo-env

setup: $(VENV)/.installed

# torch first (the pinned CPU build), then everything else under the constraints file so that no
# later requirement can swap torch for a CUDA build.
$(VENV)/.installed: pyproject.toml setup.py $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(CONSTRAINTS) torch
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[dev,nemo-run]'
	touch $@

# The separate NeMo 2 environment that tests/test_emit_nemo.py runs its checks in (about 150 s and
# 2.9 GB from nothing; a no-op once built). Pins: tests/nemo/constraints.txt.
NEMO_VENV ?= .venv-nemo
NEMO_CONSTRAINTS := tests/nemo/constraints.txt
nemo-env: $(NEMO_VENV)/.installed

$(NEMO_VENV)/.installed: $(NEMO_CONSTRAINTS)
	test -x $(NEMO_VENV)/bin/python || $(PYTHON) -m venv $(NEMO_VENV)
	$(NEMO_VENV)/bin/python -m pip install -q --upgrade pip
	$(NEMO_VENV)/bin/python -m pip install -q -c $(NEMO_CONSTRAINTS) torch
	$(NEMO_VENV)/bin/python -m pip install -q -c $(NEMO_CONSTRAINTS) 'nemo-toolkit[llm,run]' megatron-core pyarrow leptonai
	$(NEMO_VENV)/bin/python -c 'from nemo.collections import llm'
	touch $@

# Rebuild the C++ extensions in place after editing csrc/.
build: setup
	$(BIN)/python setup.py -q build_ext --inplace

regmix_plugin/_blend.stamp: $(SOURCES) | setup
	$(BIN)/python setup.py -q build_ext --inplace
	touch $@

quickstart: regmix_plugin/_blend.stamp
	$(BIN)/regmix run configs/quickstart.yaml

test: regmix_plugin/_blend.stamp
	$(BIN)/python -m pytest -q -ra tests

test-fast: regmix_plugin/_blend.stamp
	$(BIN)/python -m pytest -q -ra -m "not slow" tests

check: setup
	$(BIN)/ruff check regmix_plugin tests benchmarks
	$(BIN)/ruff format --check regmix_plugin tests benchmarks
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix regmix_plugin tests benchmarks
	$(BIN)/ruff format regmix_plugin tests benchmarks

bench: regmix_plugin/_blend.stamp
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf build $(VENV) regmix_plugin/*.so regmix_plugin/_blend.stamp *.egg-info
