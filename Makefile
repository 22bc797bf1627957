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

# No binary wheel exists: pip builds it from source once (~7-12 min on 2 cores) and keeps the
# built wheel in its cache, so later venvs on the machine install it in seconds.
server: $(VENV)/.server
$(VENV)/.server: $(VENV)/.installed
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps llama-cpp-python==$(LLAMA_CPP_VERSION)
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
