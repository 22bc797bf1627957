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

.PHONY: setup server run pipeline test remote clean-venv

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
# is down, so pull first (what the remote lacks is skipped), then compute, then push. `emoneurons
# pull` is `dvc pull --allow-missing --run-cache` saying in one line, not one warning per output,
# that a fresh clone has nothing to pull yet; DVC's errors pass through.
pipeline:
	@emoneurons pull || echo "make run: could not pull from the default DVC remote (dvc's error above); computing locally" >&2
	dvc repro
	@dvc push --run-cache || { echo "make run: the results are computed and kept in the workspace and the local cache, but dvc push to the default remote failed (dvc's error above); run 'dvc push --run-cache' once it is reachable" >&2; exit 1; }

test: setup server
	$(PY) -m pytest -n 2 --dist loadfile

clean-venv:
	rm -rf $(VENV)
