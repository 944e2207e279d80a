# Two commands set everything up on a fresh machine:
#   make quickstart   # venv + install + the main job on the bundled default config
#   make test         # venv + install + Debian packages (as root) + NeMo venv + the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
CONSTRAINTS := .ci/constraints.txt
SOURCES := $(wildcard csrc/*/*.cpp csrc/*/*.h)

.PHONY: setup build quickstart test test-fast check format bench clean nemo-env py312-env system-deps

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

# The Python 3.12 environment with the current stack (megatron-core 0.19.2, Megatron-Bridge 0.6.2
# data path, NeMo-Run) that `make test` runs the blending, Megatron-integration, proxy and stack
# tests in as well (tests/stack/py312_tests.txt). A no-op once built. Pins:
# tests/stack/constraints-312.txt. torch resolves to the CUDA build there (no CPU build for 3.12
# on PyPI); it runs on the CPU. Megatron-Bridge is installed without its dependencies (its
# resolver path builds fast-hadamard-transform from source and downgrades megatron-core); the
# ones its data path needs are listed here.
PYTHON312 ?= python3.12
VENV312 ?= .venv-312
PY312_CONSTRAINTS := tests/stack/constraints-312.txt
py312-env: $(VENV312)/.installed

$(VENV312)/.installed: pyproject.toml setup.py $(PY312_CONSTRAINTS)
	test -x $(VENV312)/bin/python || $(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install -q --upgrade pip
	$(VENV312)/bin/python -m pip install -q -c $(PY312_CONSTRAINTS) torch
	$(VENV312)/bin/python -m pip install -q -c $(PY312_CONSTRAINTS) -e '.[dev,nemo-run]' megatron-core
	$(VENV312)/bin/python -m pip install -q --no-deps -c $(PY312_CONSTRAINTS) megatron-bridge
	$(VENV312)/bin/python -m pip install -q -c $(PY312_CONSTRAINTS) transformers datasets \
	    omegaconf einops megatron-energon diffusers nvidia-modelopt
	$(VENV312)/bin/python setup.py -q build_ext --inplace --build-temp build/py312
	$(VENV312)/bin/python -c 'import megatron.core, megatron.training, regmix_plugin._blend'
	touch $@

# Rebuild the C++ extensions in place after editing csrc/.
build: setup
	$(BIN)/python setup.py -q build_ext --inplace

regmix_plugin/_blend.stamp: $(SOURCES) | setup
	$(BIN)/python setup.py -q build_ext --inplace
	touch $@

quickstart: regmix_plugin/_blend.stamp
	$(BIN)/regmix run configs/quickstart.yaml

# Debian packages the tests use (Slurm and munge for the Slurm launcher, chromium for the report).
# Installed when run as root; otherwise the list is printed and those tests skip (CI sets
# REGMIX_REQUIRE_ALL=1, which turns such skips into failures).
system-deps:
	@if [ "$$(id -u)" = 0 ]; then bash .ci/system-packages.sh; \
	else echo "not root: install as root: $$(bash .ci/system-packages.sh --list)"; fi

test: system-deps nemo-env regmix_plugin/_blend.stamp
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
	$(BIN)/python benchmarks/bench_blend.py --quick
	$(BIN)/python benchmarks/bench_blend_deviation.py
	$(BIN)/python benchmarks/bench_trees.py
	$(BIN)/python benchmarks/bench_paper.py
	$(BIN)/python benchmarks/bench_proxy.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_quickstart.py

clean:
	rm -rf build $(VENV) regmix_plugin/*.so regmix_plugin/_blend.stamp *.egg-info
