"""The supported torch/transformers range: declared once (pyproject.toml), read from the installed
metadata, checked in one line by set-up (`python -m emoneurons.model.versions`), by load_model before
any work, and by `make setup TORCH=system` before anything is installed. Versions are presented the
way Python finds them: a `<name>-<version>.dist-info` on the path, ahead of the installed one."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from emoneurons.model.versions import (
    SystemDist,
    UnsupportedVersionError,
    in_range,
    locked_pins,
    range_problem,
    shown,
    supported_ranges,
    system_plan,
)
from helpers.environment import own_make_env
from helpers.stage_runner import REPO

LOCK = locked_pins((REPO / "requirements.lock").read_text())
CPU_LOCK = locked_pins((REPO / "requirements-cpu.lock").read_text())
# The plans below are computed against this range (pyproject.toml's today), so they stay fixed when it moves.
DECLARED = {name: shown(specifier) for name, specifier in supported_ranges().items()}  # what messages name
RANGES = {"torch": SpecifierSet(">=2.11,<2.14"), "transformers": SpecifierSet(">=5.17,<5.25")}


def dist_info(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A distribution's metadata, as an installer leaves it: enough for importlib.metadata."""
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    return folder


def test_ranges_come_from_pyproject_and_cover_the_lock_and_the_cuda_images():
    declared = {Requirement(line).name: Requirement(line).specifier
                for line in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    ranges = supported_ranges()
    assert ranges == {"torch": declared["torch"], "transformers": declared["transformers"]}
    # At least the lock's versions and what current CUDA images ship (torch 2.11, transformers 5.17).
    assert in_range("2.11.0", ranges["torch"]) and in_range("5.17.0", ranges["transformers"])
    for name in ranges:
        assert in_range(LOCK[name][0], ranges[name]) and in_range(CPU_LOCK[name][0], ranges[name])


@pytest.mark.parametrize(("name", "version", "supported"), [
    ("torch", "2.11.0", True), ("torch", "2.13.0+cpu", True), ("torch", "2.13.9", True),
    ("torch", "2.11.0a0+ecf3bae40a", True),  # NVIDIA's containers: a pre-release label on 2.11's code
    ("torch", "2.10.2", False), ("torch", "2.14.0", False), ("torch", "2.14.0.dev20261201", False),
    ("transformers", "5.17.0", True), ("transformers", "5.24.3", True),
    ("transformers", "5.16.2", False), ("transformers", "5.25.0.dev0", False), ("transformers", "not-a-version", False),
])
def test_range_edges(name, version, supported):
    assert in_range(version, RANGES[name]) is supported


def test_the_problem_is_one_line_naming_package_version_and_range():
    assert range_problem("torch", "2.13.0", RANGES["torch"]) is None
    line = range_problem("torch", "2.9.1", RANGES["torch"], "/usr/lib/python3/dist-packages")
    assert line == ("unsupported torch 2.9.1 (in /usr/lib/python3/dist-packages); "
                    "emoneurons supports torch>=2.11,<2.14 (pyproject.toml)")
    assert range_problem("transformers", None, RANGES["transformers"]) == \
        "transformers is not installed; emoneurons supports transformers>=5.17,<5.25 (pyproject.toml)"


def run_python(code: list[str], path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, *code], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


def test_set_up_check_passes_on_the_venv_and_fails_in_one_line_out_of_range(tmp_path):
    ok = run_python(["-m", "emoneurons.model.versions"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"torch {importlib.metadata.version('torch')} (supported: {DECLARED['torch']}), "
                                f"transformers {importlib.metadata.version('transformers')} (supported: ")
    result = run_python(["-m", "emoneurons.model.versions"], dist_info(tmp_path, "torch", "2.9.0"))
    assert result.returncode == 1
    assert result.stderr == (f"unsupported torch 2.9.0 (in {tmp_path.resolve()}); "
                             f"emoneurons supports torch{DECLARED['torch']} (pyproject.toml)\n")


def test_a_stage_loading_a_model_stops_in_one_line_before_any_work(tmp_path):
    # A hub id that does not exist offline: were the check not first, loading would fail on it instead.
    script = ("from emoneurons.runtime.stage_run import run_stage\n"
              "from emoneurons.model.loading import load_model\n"
              "from emoneurons.params import ModelParams\n"
              "run_stage(lambda: load_model(ModelParams(id='nobody/no-such-model', gguf_file=None, dtype='float32', "
              "device='cpu', batch_size=1, max_length=8)), 'count')\n")
    result = run_python(["-c", script], dist_info(tmp_path, "transformers", "5.25.0"))
    assert result.returncode == 1
    assert result.stderr == (f"count: unsupported transformers 5.25.0 (in {tmp_path.resolve()}); "
                             f"emoneurons supports transformers{DECLARED['transformers']} (pyproject.toml)\n")


CUDA_ONLY = set(LOCK) - set(CPU_LOCK)


def test_the_cuda_only_packages_are_torchs_cuda_libraries():
    assert "torch" not in CUDA_ONLY and "triton" in CUDA_ONLY and "nvidia-cudnn-cu13" in CUDA_ONLY
    assert all(name.startswith(("nvidia-", "cuda-", "triton")) for name in CUDA_ONLY), CUDA_ONLY


def plan(system: dict[str, SystemDist]) -> tuple[set[str], list[str]]:
    lines, kept = system_plan(LOCK, CPU_LOCK, system, RANGES)
    return {canonicalize_name(Requirement(line).name) for line in lines}, kept


def test_system_torch_kept_with_its_cuda_libraries_the_rest_from_the_lock():
    # An NVIDIA image's torch: the lock's typing-extensions serves its requirement, so the lock's is installed.
    torch = SystemDist("2.11.0a0+ecf3bae40a", ("typing-extensions>=4.10.0", "sympy>=1.13.3", "nvidia-nccl-cu13==2.28.3; platform_system == 'Linux'"))
    installed, kept = plan({"torch": torch, "typing_extensions": SystemDist("4.10.0", ())})
    assert kept == ["torch"]
    assert installed == set(LOCK) - CUDA_ONLY - {"torch"}
    assert "transformers" in installed and "typing-extensions" in installed


def test_system_transformers_kept_with_the_hub_version_it_needs():
    transformers = SystemDist("5.17.0", ("huggingface-hub>=1.3.0,<2.0", "tokenizers>=0.22.0,<=0.23.0", "safetensors>=0.4.3",
                                         "pytest; extra == 'testing'"))
    system = {"torch": SystemDist("2.11.0", ()), "transformers": transformers,
              "huggingface-hub": SystemDist("1.33.0", ()), "tokenizers": SystemDist("0.22.1", ())}
    installed, kept = plan(system)
    # The lock's huggingface-hub 2.4.0 and tokenizers 0.23.3 would break transformers 5.17: the system's stay.
    assert kept == ["torch", "transformers", "huggingface-hub", "tokenizers"]
    assert installed == set(LOCK) - CUDA_ONLY - set(kept)
    assert "safetensors" in installed and "pytest" in installed


@pytest.mark.parametrize(("system", "message"), [
    ({}, "TORCH=system: this Python has no torch; load the cluster's torch (e.g. its module) first, "
         "or run `make setup` for the lock's torch"),
    ({"torch": SystemDist("2.9.1", (), "/sw/torch")},
     "TORCH=system: unsupported torch 2.9.1 (in /sw/torch); emoneurons supports torch>=2.11,<2.14 (pyproject.toml)"),
    ({"torch": SystemDist("2.12.0", ()), "transformers": SystemDist("4.57.1", (), "/sw/hf")},
     "TORCH=system: unsupported transformers 4.57.1 (in /sw/hf); emoneurons supports transformers>=5.17,<5.25 (pyproject.toml)"),
    ({"torch": SystemDist("2.12.0", ()), "transformers": SystemDist("5.17.0", ("huggingface-hub<2.0",))},
     "TORCH=system: the system's transformers 5.17.0 needs huggingface-hub<2.0, the lock has huggingface-hub==2.4.0 "
     "and the system has none; install one in its range there"),
])
def test_system_set_up_refuses_in_one_line(system, message):
    with pytest.raises(UnsupportedVersionError) as error:
        plan(system)
    assert str(error.value) == message


def test_make_setup_torch_system_stops_in_one_line_before_installing(tmp_path):
    """The make target itself: a "system" whose torch is 2.9.0 (a module's dist-info on PYTHONPATH,
    as `module load` presents it) stops at the check, before the lock is installed."""
    venv = tmp_path / "venv"
    env = own_make_env()
    env["PYTHONPATH"] = str(dist_info(tmp_path / "sys", "torch", "2.9.0"))
    result = subprocess.run(["make", "-s", "setup", "TORCH=system", f"VENV={venv}"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if "torch" in line and not line.startswith("make")]
    assert ours == [f"TORCH=system: unsupported torch 2.9.0 (in {(tmp_path / 'sys').resolve()}); "
                    f"emoneurons supports torch{DECLARED['torch']} (pyproject.toml)"], result.stderr
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("numpy*")) and not list(site.glob("transformers*"))  # nothing of the lock installed
    assert (venv / "pyvenv.cfg").read_text().count("include-system-site-packages = true") == 1
