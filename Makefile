# Two commands set everything up on a fresh machine:
#   make quickstart   # venv + install + the main job on the bundled default config
#   make test         # venv + install + Debian packages (as root) + NeMo venv + the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
CONSTRAINTS := .ci/constraints.txt
SOURCES := $(wildcard csrc/*/*.cpp csrc/*/*.h)
# setuptools prints an "Editable installation" banner for every editable install of a flat
# layout (a caution about same-named folders, nothing to act on); filtered from our installs.
EDITABLE := PYTHONWARNINGS="ignore:Editable installation"

.PHONY: setup build quickstart test test-312 test-fast check format bench clean nemo-env py312-env system-deps

setup: $(VENV)/.installed

# torch first (the pinned CPU build), then everything else under the constraints file so that no
# later requirement can swap torch for a CUDA build.
$(VENV)/.installed: pyproject.toml setup.py $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 'setuptools>=77'
	$(PIP) install -q -c $(CONSTRAINTS) torch
	$(EDITABLE) $(PIP) install -q -c $(CONSTRAINTS) -e '.[dev,nemo-run,harness]'
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
# pyenv machines: PYENV_VERSION (default 3.12.1) selects the interpreter; elsewhere it is ignored.
PYTHON312 ?= python3.12
VENV312 ?= .venv-312
PY312_CONSTRAINTS := tests/stack/constraints-312.txt
py312-env: $(VENV312)/.installed

$(VENV312)/.installed: pyproject.toml setup.py $(PY312_CONSTRAINTS)
	test -x $(VENV312)/bin/python || PYENV_VERSION=$${PYENV_VERSION:-3.12.1} $(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install -q --upgrade pip 'setuptools>=77'
	$(VENV312)/bin/python -m pip install -q -c $(PY312_CONSTRAINTS) torch
	$(EDITABLE) $(VENV312)/bin/python -m pip install -q -c $(PY312_CONSTRAINTS) -e '.[dev,nemo-run]' megatron-core
	$(VENV312)/bin/python -m pip install -q --no-deps -c $(PY312_CONSTRAINTS) megatron-bridge
	$(VENV312)/bin/python -m pip install -q -c $(PY312_CONSTRAINTS) transformers datasets \
	    omegaconf einops megatron-energon diffusers nvidia-modelopt
	$(VENV312)/bin/python -c 'import megatron.core, megatron.training'
	touch $@

# The C++ extensions for 3.12, rebuilt after csrc/ edits (the stamp lives in the ignored venv).
$(VENV312)/.ext.stamp: $(SOURCES) $(VENV312)/.installed
	$(VENV312)/bin/python setup.py -q build_ext --inplace --build-temp build/py312
	$(VENV312)/bin/python -c 'import regmix_plugin._blend, regmix_plugin._trees'
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

# The whole suite on the 3.11 floor, then the current stack's tests on Python 3.12
# (PY312_TESTS: blending, Megatron integration, proxy, emit, and tests/stack).
PY312_TESTS := tests/blending tests/test_megatron_blending.py tests/proxy tests/test_emit.py \
	tests/stack/test_megatron_lm.py tests/stack/test_megatron_training_format.py \
	tests/stack/test_bridge_provider.py
test: system-deps nemo-env $(VENV312)/.ext.stamp regmix_plugin/_blend.stamp
	$(BIN)/python -m pytest -q -ra -m "not stack312" tests
	$(VENV312)/bin/python -m pytest -q -ra -p no:cacheprovider $(PY312_TESTS)

# Only the 3.12 stack tests (after `make py312-env`).
test-312: $(VENV312)/.ext.stamp
	$(VENV312)/bin/python -m pytest -q -ra -p no:cacheprovider $(PY312_TESTS)

test-fast: regmix_plugin/_blend.stamp
	$(BIN)/python -m pytest -q -ra -m "not slow and not stack312" tests

check: setup
	$(BIN)/ruff check regmix_plugin tests benchmarks
	$(BIN)/ruff format --check regmix_plugin tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

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
	rm -rf build $(VENV) $(VENV312) regmix_plugin/*.so regmix_plugin/_blend.stamp *.egg-info
