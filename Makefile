# The two commands of the README: `make run` and `make test`. Both set up first.
VENV ?= .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
# llama.cpp's OpenAI-compatible server, for tests/unit/backends/test_llama_server.py only (its Python deps are in the lock).
LLAMA_CPP_VERSION := 0.3.36
# The per-user default DVC remote: outside the work tree, so a second clone on this machine can pull.
REMOTE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/emoneurons/dvc-remote
# The Python the venv is made from (TORCH=system: the one whose torch to use).
PYTHON ?= python3
# Which torch set-up installs (docs/SETUP.md): `lock`, the lock as it is (on Linux torch's CUDA
# build from the package index with its CUDA libraries, ~3 GB; it runs with and without a GPU);
# `cpu`, requirements-cpu.lock (the same versions, torch's CPU build, no CUDA libraries) with torch
# from TORCH_CPU_WHEELS or TORCH_CPU_INDEX; `system`, a venv that sees $(PYTHON)'s own torch (and
# transformers), the lock for the rest. A machine whose wheel folder has the CPU wheel (the dev and
# CI machines) gets `cpu` unless told otherwise.
LOCK := requirements.lock
CPU_LOCK := requirements-cpu.lock
TORCH_VERSION := $(shell sed -n 's/^torch==\([^ ;]*\).*/\1/p' $(LOCK) 2>/dev/null)
TORCH_CPU_WHEELS ?= /opt/wheels
TORCH_CPU_INDEX ?=
TORCH ?= $(if $(wildcard $(TORCH_CPU_WHEELS)/torch-$(TORCH_VERSION)+cpu-*.whl),cpu,lock)
# --compile-bytecode: uv installs no .pyc files, and where PYTHONDONTWRITEBYTECODE is set (as on
# some CI images) Python then compiles every imported module on every start: ~12 s of CPU per stage
# process for torch, transformers, great-expectations and dvc, paid by every stage and test.
UV_INSTALL = $(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) --no-deps

export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup server lower-env run pipeline test remote clean-venv deps lock lock-check gpu-check gpu-wheels bench-scale FORCE

setup: $(VENV)/.installed remote

# A fresh venv each time (a lock that drops a package drops it here too), and again when the
# variant differs from the one the venv was made for ($(VENV)/.torch). --no-deps everywhere: uv
# evaluates the lock's markers and resolves nothing; the build of the editable install is pinned
# by the lock too (setuptools).
$(VENV)/.installed: $(LOCK) $(CPU_LOCK) pyproject.toml $(if $(filter-out $(TORCH),$(shell cat $(VENV)/.torch 2>/dev/null)),FORCE)
	@case "$(TORCH)" in lock|cpu|system) ;; *) echo "make setup: TORCH=$(TORCH) is not a variant; allowed: lock, cpu, system" >&2; exit 2;; esac
	rm -rf $(VENV)
	$(PYTHON) -m venv $(if $(filter system,$(TORCH)),--system-site-packages) $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(UV_INSTALL) --build-constraints $(LOCK) -e .
	$(install-$(TORCH))
	$(PY) -m emoneurons.model.versions
	echo $(TORCH) > $(VENV)/.torch
	touch $@

define install-lock
$(UV_INSTALL) -r $(LOCK)
endef

define install-cpu
@[ -n "$(TORCH_CPU_INDEX)" ] || ls $(TORCH_CPU_WHEELS)/torch-$(TORCH_VERSION)+cpu-*.whl >/dev/null 2>&1 || { echo "make setup TORCH=cpu: no torch-$(TORCH_VERSION)+cpu wheel in TORCH_CPU_WHEELS=$(TORCH_CPU_WHEELS); pass TORCH_CPU_WHEELS=<a folder with it> or TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu" >&2; exit 1; }
grep -v '^torch==' $(CPU_LOCK) > $(VENV)/.lock-cpu-rest.txt
$(UV_INSTALL) -r $(VENV)/.lock-cpu-rest.txt
$(UV_INSTALL) torch==$(TORCH_VERSION)+cpu $(if $(TORCH_CPU_INDEX),--index-url $(TORCH_CPU_INDEX),--find-links $(TORCH_CPU_WHEELS))
endef

# The range check (one line when out of range) runs before anything else is installed; it needs
# only `packaging`. It prints the lock less what the system keeps (torch, its CUDA libraries,
# transformers when the system has one, a requirement of theirs the lock's version would break).
define install-system
@$(PY) -c "import packaging" 2>/dev/null || $(UV_INSTALL) "$$(grep '^packaging==' $(LOCK))"
@$(PY) -m emoneurons.model.versions --system-lock $(LOCK) $(CPU_LOCK) > $(VENV)/.lock-system-rest.txt
$(UV_INSTALL) -r $(VENV)/.lock-system-rest.txt
$(PY) -c "import torch, transformers, emoneurons"
endef

# Regenerate both locks from pyproject.toml + requirements.in (needs the package index; a CPU torch
# wheel in TORCH_CPU_WHEELS or TORCH_CPU_INDEX for the CPU lock). The existing pins are kept where
# they still fit: upgrade one with `make lock UPGRADE="--upgrade-package torch"`.
LOCK_COMPILE = $(VENV)/bin/uv pip compile -q pyproject.toml requirements.in --extra test --universal --python-version 3.11 --excludes requirements.exclude --custom-compile-command "make lock"
lock: $(VENV)/.installed
	$(LOCK_COMPILE) $(UPGRADE) -o $(LOCK)
	sed -n 's/^torch==\([^ ;]*\).*/torch==\1+cpu/p' $(LOCK) > $(VENV)/.torch-cpu-override.txt
	$(LOCK_COMPILE) -c $(LOCK) --overrides $(VENV)/.torch-cpu-override.txt $(if $(TORCH_CPU_INDEX),--extra-index-url $(TORCH_CPU_INDEX),--find-links $(TORCH_CPU_WHEELS)) -o $(CPU_LOCK)

# The locks are exactly what `make lock` resolves from its inputs at the locked versions: nothing
# missing (torch's CUDA libraries were, once), nothing extra. Needs uv's cache or the package index;
# tests/project/test_lock.py runs it with UV_OFFLINE=1. No prerequisite: it must not rebuild a venv in use.
LOCK_CHECK_DIR ?= $(VENV)
lock-check:
	@rm -f $(LOCK_CHECK_DIR)/lock-check.txt $(LOCK_CHECK_DIR)/lock-check-cpu.txt
	@$(LOCK_COMPILE) --no-header --no-annotate -c $(LOCK) -o $(LOCK_CHECK_DIR)/lock-check.txt
	@grep -v '^ *#' $(LOCK) | diff -u --label "$(LOCK)" - --label "resolved (make lock)" $(LOCK_CHECK_DIR)/lock-check.txt
	@echo "$(LOCK) is what make lock resolves"
	@if [ -z "$(TORCH_CPU_INDEX)" ] && ! ls $(TORCH_CPU_WHEELS)/torch-$(TORCH_VERSION)+cpu-*.whl >/dev/null 2>&1; then \
	  echo "$(CPU_LOCK) not checked: no torch-$(TORCH_VERSION)+cpu wheel in TORCH_CPU_WHEELS=$(TORCH_CPU_WHEELS) and no TORCH_CPU_INDEX"; exit 0; fi; \
	sed -n 's/^torch==\([^ ;]*\).*/torch==\1+cpu/p' $(LOCK) > $(LOCK_CHECK_DIR)/lock-check-override.txt && \
	$(LOCK_COMPILE) --no-header --no-annotate -c $(LOCK) --overrides $(LOCK_CHECK_DIR)/lock-check-override.txt $(if $(TORCH_CPU_INDEX),--extra-index-url $(TORCH_CPU_INDEX),--find-links $(TORCH_CPU_WHEELS)) -o $(LOCK_CHECK_DIR)/lock-check-cpu.txt && \
	grep -v '^ *#' $(CPU_LOCK) | diff -u --label "$(CPU_LOCK)" - --label "resolved (make lock)" $(LOCK_CHECK_DIR)/lock-check-cpu.txt && \
	echo "$(CPU_LOCK) is what make lock resolves"

# No binary wheel exists: it is built from source once per machine (~17 min on 2 cores) into a
# folder named by the version and the build flags, so later venvs install it in seconds. The flags
# pin a portable x86 build: a -march=native build on a CPU with AMX/AVX-512 segfaulted on every
# batched prompt (n_batch > 1) in llama.cpp's decode, and pip's own wheel cache would have kept
# serving that build whatever CMAKE_ARGS said (it keys wheels by version, not flags).
LLAMA_CPP_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_LLAMAFILE=OFF
LLAMA_CPP_WHEELS := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/emoneurons/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(shell printf '%s' '$(LLAMA_CPP_CMAKE_ARGS)' | sha256sum | cut -c1-12)
server: $(VENV)/.server
$(VENV)/.server: $(VENV)/.installed
	@ls "$(LLAMA_CPP_WHEELS)"/llama_cpp_python-*.whl >/dev/null 2>&1 || { \
	  mkdir -p "$(LLAMA_CPP_WHEELS).tmp" && \
	  CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" $(VENV)/bin/pip wheel -q --disable-pip-version-check --no-deps --no-cache-dir \
	    --no-binary llama-cpp-python -w "$(LLAMA_CPP_WHEELS).tmp" llama-cpp-python==$(LLAMA_CPP_VERSION) && \
	  rm -rf "$(LLAMA_CPP_WHEELS)" && mv "$(LLAMA_CPP_WHEELS).tmp" "$(LLAMA_CPP_WHEELS)"; }
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --force-reinstall "$(LLAMA_CPP_WHEELS)"/llama_cpp_python-*.whl
	touch $@

# The lower end of the supported range (torch 2.11 + transformers 5.17, requirements-lower.lock):
# only the packages that differ from the main lock, installed into an overlay folder that
# tests/project/test_lower_end.py puts first on PYTHONPATH to rerun the engine, counting, family and
# mask-eval reference tests. Linux x86_64 only (PyPI's only torch 2.11.0 there is the CUDA build:
# ~3 GB of nvidia-* libraries, downloaded once into uv's cache); elsewhere it says so and the test
# skips (outside CI).
LOWER_VENV ?= .venv-lower
lower-env: $(LOWER_VENV)/.installed
$(LOWER_VENV)/.installed: requirements-lower.lock $(VENV)/.installed
	@if [ "$$(uname -sm)" != "Linux x86_64" ]; then \
	  echo "lower-env: requirements-lower.lock is for Linux x86_64, this is $$(uname -sm): the lower-end tests skip"; \
	else \
	  rm -rf $(LOWER_VENV) && \
	  $(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) --target $(LOWER_VENV) --no-deps -r requirements-lower.lock && \
	  touch $@; \
	fi

# A default remote only where none is set: `dvc remote default` fails when there is none.
remote: $(VENV)/.installed
	@dvc remote default >/dev/null 2>&1 || { mkdir -p "$(REMOTE)" && dvc remote add --local -d local "$(REMOTE)" && echo "DVC remote 'local' -> $(REMOTE)"; }

run: setup
	@$(MAKE) --no-print-directory pipeline

# The pipeline alone (tests run it in projects without a .venv of their own). An unreachable or
# refusing remote must not stop the local run: `dvc repro --pull` fails outright when the remote
# is down, so pull first (what the remote lacks is skipped), then compute, then push. `emoneurons
# pull` is `dvc pull --allow-missing --run-cache` saying in one line, not one warning per output,
# that a fresh clone has nothing to pull yet; DVC's errors pass through.
pipeline:
	@emoneurons pull || echo "make run: could not pull from the default DVC remote (dvc's error above); computing locally" >&2
	dvc repro
	@dvc push --run-cache || { echo "make run: the results are computed and kept in the workspace and the local cache, but dvc push to the default remote failed (dvc's error above); run 'dvc push --run-cache' once it is reachable" >&2; exit 1; }

# lock-check first, online: it puts the locked packages' metadata in uv's cache (~10 s, ~50 MB on a
# fresh machine), so tests/project/test_lock.py can re-resolve the locks offline; a failure here is the
# test's to report.
# ruff first (pyproject.toml's [tool.ruff]: lint and import order), seconds before the suite's minutes;
# `make test RUFF_CHECK=` runs the suite without it.
RUFF_CHECK ?= $(VENV)/bin/ruff check .
test: setup server lower-env
	$(RUFF_CHECK)
	@$(MAKE) --no-print-directory -s lock-check >/dev/null 2>&1 || echo "make test: make lock-check failed (tests/project/test_lock.py will say why)"
	$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# The pipeline at the paper's data volume (bench/scale_run.py, docs/SCALE.md): a synthetic EmoPrism-shaped
# file, a tiny random Llama, `dvc repro` in a scratch project at 10%, 30% and 100% of 293,725 records,
# per stage wall time, tokens/s and peak RSS. Hours on 2 cores; BENCH_SCALE_ARGS="--fractions 0.01,0.03 --until count" for minutes.
BENCH_SCALE_ARGS ?=
bench-scale: setup
	$(PY) bench/scale_run.py $(BENCH_SCALE_ARGS)

# dvc.yaml's code deps from the stages' imports (tools/dvc_deps.py); tests/project/test_dvc_yaml.py checks them.
deps: $(VENV)/.installed
	$(PY) tools/dvc_deps.py

clean-venv:
	rm -rf $(VENV) $(LOWER_VENV)

# The GPU check (bench/gpu_check.py, docs/SCALE.md): on a lent H100/H200 in < 8 minutes, one
# JSON of every figure. It runs on the machine's own Python and packages (the CUDA image has no
# package index and no .venv): what that image lacks comes from the wheels `make gpu-wheels`
# downloads here, at the lock's versions. DEVICE=cpu runs the same script on the CPU (a test does).
DEVICE ?= cuda
GPU_CHECK_OUT ?= bench/gpu-check.json
GPU_WHEELS ?= gpu-wheels
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_WHEEL_PACKAGES := polars polars-runtime-32 pydantic pydantic-core annotated-types typing-inspection typing-extensions
GPU_WHEEL_PINS = $(foreach p,$(GPU_WHEEL_PACKAGES),$(shell grep -m1 '^$(p)==' requirements.lock))
GPU_WHEELS_MAX_MIB := 60

gpu-check:
	@$(GPU_PYTHON) bench/gpu_check.py --device $(DEVICE) --out $(GPU_CHECK_OUT) --wheels $(GPU_WHEELS)

# cp312 manylinux x86_64 (or pure-Python / abi3) wheels for the CUDA image's Python 3.12.
gpu-wheels: $(VENV)/.installed
	@[ $(words $(GPU_WHEEL_PINS)) -eq $(words $(GPU_WHEEL_PACKAGES)) ] || { echo "make gpu-wheels: requirements.lock pins only '$(GPU_WHEEL_PINS)' of $(GPU_WHEEL_PACKAGES) (names as the lock spells them)" >&2; exit 1; }
	@rm -rf $(GPU_WHEELS).tmp && mkdir -p $(GPU_WHEELS).tmp
	$(VENV)/bin/pip download -q --disable-pip-version-check --only-binary=:all: --no-deps \
	  --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
	  -d $(GPU_WHEELS).tmp $(GPU_WHEEL_PINS)
	@size=$$(du -cb $(GPU_WHEELS).tmp/*.whl | tail -1 | cut -f1); \
	  if [ $$size -gt $$(( $(GPU_WHEELS_MAX_MIB) * 1024 * 1024 )) ]; then \
	    echo "make gpu-wheels: $$size bytes of wheels, over the $(GPU_WHEELS_MAX_MIB) MiB that may travel" >&2; exit 1; fi; \
	  rm -rf $(GPU_WHEELS) && mv $(GPU_WHEELS).tmp $(GPU_WHEELS) && \
	  echo "make gpu-wheels: $$(ls $(GPU_WHEELS)/*.whl | wc -l) wheels, $$size bytes in $(GPU_WHEELS)/"
