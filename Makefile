# The two commands of the README: `make run` and `make test`. Both set up first.
VENV ?= .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
# llama.cpp's OpenAI-compatible server, for tests/test_llama_server.py only (its Python deps are in the lock).
LLAMA_CPP_VERSION := 0.3.36
# The per-user default DVC remote: outside the work tree, so a second clone on this machine can pull.
REMOTE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/emoneurons/dvc-remote
# Use a local wheel folder when the machine has one (CPU torch on the dev machines).
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup server run pipeline test remote clean-venv gpu-check gpu-wheels

setup: $(VENV)/.installed remote

$(VENV)/.installed: requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -r requirements.lock $(FIND_LINKS)
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	touch $@

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

# A default remote only where none is set: `dvc remote default` fails when there is none.
remote: $(VENV)/.installed
	@dvc remote default >/dev/null 2>&1 || { mkdir -p "$(REMOTE)" && dvc remote add --local -d local "$(REMOTE)" && echo "DVC remote 'local' -> $(REMOTE)"; }

run: setup
	@$(MAKE) --no-print-directory pipeline

# The pipeline alone (tests run it in projects without a .venv of their own). An unreachable or
# refusing remote must not stop the local run: `dvc repro --pull` fails outright when the remote
# is down, so pull first (what the remote lacks is skipped), then compute, then push.
pipeline:
	@dvc pull --allow-missing --run-cache || echo "make run: could not pull from the default DVC remote (dvc's error above); computing locally" >&2
	dvc repro
	@dvc push --run-cache || { echo "make run: the results are computed and kept in the workspace and the local cache, but dvc push to the default remote failed (dvc's error above); run 'dvc push --run-cache' once it is reachable" >&2; exit 1; }

test: setup server
	$(PY) -m pytest -n 2 --dist loadfile

clean-venv:
	rm -rf $(VENV)

# The GPU check (bench/gpu_check.py, README "GPU check"): on a lent H100/H200 in < 8 minutes, one
# JSON of every figure. It runs on the machine's own Python and packages (the CUDA image has no
# package index and no .venv): what that image lacks comes from the wheels `make gpu-wheels`
# downloads here, at the lock's versions. DEVICE=cpu runs the same script on the CPU (a test does).
DEVICE ?= cuda
GPU_CHECK_OUT ?= bench/gpu-check.json
GPU_WHEELS ?= gpu-wheels
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_WHEEL_PACKAGES := polars polars-runtime-32 pydantic pydantic_core annotated-types typing-inspection typing_extensions
GPU_WHEEL_PINS = $(foreach p,$(GPU_WHEEL_PACKAGES),$(shell grep -m1 '^$(p)==' requirements.lock))
GPU_WHEELS_MAX_MIB := 60

gpu-check:
	@$(GPU_PYTHON) bench/gpu_check.py --device $(DEVICE) --out $(GPU_CHECK_OUT) --wheels $(GPU_WHEELS)

# cp312 manylinux x86_64 (or pure-Python / abi3) wheels for the CUDA image's Python 3.12.
gpu-wheels: $(VENV)/.installed
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
