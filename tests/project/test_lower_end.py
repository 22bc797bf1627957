"""The engine, counting, family and mask-eval reference tests rerun at the lower end of the
supported range: torch and transformers from requirements-lower.lock (torch 2.11, transformers
5.17), installed by `make lower-env` into .venv-lower, put first on PYTHONPATH over this venv.
Outside CI a machine without .venv-lower skips (say so); under CI=true that is a failure (`make
test` builds it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from packaging.version import Version

from helpers.environment import missing_under_ci
from helpers.stage_runner import REPO

LOWER = REPO / ".venv-lower"
LOCK = REPO / "requirements-lower.lock"
# What differs between versions sits in these code paths: the engine (its attention and cache
# interface, sliding windows included: test_families), counting's hooks, each family's adapter,
# the reference runs of mask-eval.
FILES = ["tests/unit/model/test_families.py", "tests/unit/evaluate/test_classify.py", "tests/unit/evaluate/test_shared_prefix_attention.py", "tests/unit/neurons/test_counting.py",
         "tests/unit/evaluate/test_mask_eval_references.py", "tests/unit/evaluate/test_engine_devices.py", "tests/unit/evaluate/test_coherence.py",
         # mask-eval on the cue-free dialogues; Gemma 3's end-of-turn ids from its tokenizer.
         "tests/unit/evaluate/test_keyword_control.py", "tests/unit/model/test_embedded_gemma3.py"]


def _pinned(package: str) -> str:
    match = re.search(rf"^{package}==(\S+)$", LOCK.read_text(), re.MULTILINE)
    assert match, f"{LOCK.name} pins no {package}"
    return match.group(1)


@pytest.fixture(scope="module")
def lower_env() -> dict[str, str]:
    if not (LOWER / ".installed").exists():
        missing_under_ci(f"{LOWER.name} is missing (make lower-env, which `make test` runs; Linux x86_64 only)")
    # The outer run's pytest/xdist variables stay out: the inner run is a plain pytest of its own.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    return env | {"PYTHONPATH": os.pathsep.join([str(LOWER), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def test_the_overlay_gives_the_lower_end_versions(lower_env):
    found = subprocess.run([sys.executable, "-c", "import torch, transformers; print(torch.__version__, transformers.__version__)"],
                           env=lower_env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr[-2000:]
    torch_version, transformers_version = found.stdout.split()
    assert torch_version.split("+")[0] == _pinned("torch") and transformers_version == _pinned("transformers")


def test_engine_counting_family_and_reference_tests_pass_at_the_lower_end(lower_env):
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FILES],
                         env=lower_env, cwd=REPO, capture_output=True, text=True, timeout=1200)
    tail = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, f"at torch {_pinned('torch')} + transformers {_pinned('transformers')}:\n{tail}"
    assert re.search(r"\d+ passed", run.stdout) and " skipped" not in run.stdout.splitlines()[-1], tail


def test_the_lower_lock_is_the_lower_end_of_the_declared_range():
    """The overlay tests the range's floor, not some version inside it: requirements-lower.lock pins
    each checked package at the lowest release pyproject.toml admits."""
    from emoneurons.model.versions import CHECKED, supported_ranges

    for package, specifier in supported_ranges().items():
        floors = [clause.version for clause in specifier if clause.operator == ">="]
        assert floors, f"{package}: the declared range {specifier} has no lower bound"
        pinned = _pinned(package)
        assert pinned in specifier and Version(pinned).release[:2] == Version(floors[0]).release[:2], (package, pinned, str(specifier))
    assert set(supported_ranges()) == set(CHECKED)
