# The two quickstart commands. Each sets up what it needs first, idempotently: a virtual environment in the
# checkout (.venv), the CPU build of torch (TORCH=... to choose another), the package built against it, then
# runs its job. Bring-your-own-torch installs (CUDA, NPU) follow the README's manual steps instead.
#   make bench     the main job: the attention benchmark at the paper's shape (ARGS="--dry-run" etc. pass through)
#   make test      the tests, as CI runs them
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
# The numerics-sensitive tests once more with torch and oneDNN capped to AVX2, so that a tolerance tuned to one
# ISA fails on every machine, not only on some; and with oneDNN capped below AMX (on an AMX machine: the AVX-512
# kernels with bf16 computed in fp32, as on AVX-512 CPUs without AMX).
CAPPED := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
NO_AMX := ONEDNN_MAX_CPU_ISA=AVX512_CORE

.PHONY: bench test install
bench: install
	$(PY) benchmarks/attention.py $(ARGS)

test: install
	$(PY) -m skiparse.info
	$(PY) -m skiparse.triton.aot --jobs 2
	$(PY) -m skiparse.triton.aot --loop-report --jobs 2
	$(CAPPED) $(PY) -m pytest tests -q -m numerics
	$(NO_AMX) $(PY) -m pytest tests -q -m numerics
	$(PY) -m pytest tests -q

install: $(VENV)/.installed

# Rebuilt when the build or the C++ sources change. torch is installed first and alone, pinned: an unpinned torch
# (or an isolated build) would pull a multi-GB CUDA build onto a CPU machine.
$(VENV)/.installed: pyproject.toml setup.py $(shell find csrc -name '*.cpp' -o -name '*.h' 2>/dev/null)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet "setuptools>=64" wheel ninja pybind11
	MAX_JOBS=2 $(PY) -m pip install --quiet --no-build-isolation -e ".[test,bench]"
	touch $@
