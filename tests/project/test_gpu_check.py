"""`make gpu-check` (bench/gpu_check.py) works before a card is lent: with DEVICE=cpu it runs every
check and writes one JSON of every figure; with a CUDA device on a machine without a GPU, or on a
Python lacking a package it needs, it stops in one line; gpu-wheels/ wheels are put on sys.path."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile

from helpers.environment import own_make_env
from helpers.stage_runner import REPO

CHECKS = ["bench_8b", "attention_kernel", "engine", "count", "mask_eval", "steer"]


def gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=own_make_env(env))


def test_make_gpu_check_on_the_cpu_runs_every_check_into_one_json(tmp_path):
    out = tmp_path / "gpu-check.json"
    result = make("gpu-check", "DEVICE=cpu", f"GPU_CHECK_OUT={out}", f"GPU_PYTHON={sys.executable}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["device"] == "cpu" and record["all_passed"] is True
    assert list(record["checks"]) == CHECKS
    assert all(check["pass"] is True for check in record["checks"].values())
    bench = record["checks"]["bench_8b"]
    assert bench["count_tokens_per_s"] > 0 and bench["masked_tokens_per_s"] > 0 and bench["shape"] == "tiny (cpu run)"
    assert record["checks"]["engine"]["float32"]["max_abs_score_diff"] <= 1e-4
    assert record["checks"]["mask_eval"]["masked_conditions"] > 0 and record["checks"]["steer"]["conditions"] > 0
    assert [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("gpu-check ")] == \
        [f"gpu-check {name}" for name in CHECKS]


def test_make_gpu_check_without_a_gpu_is_one_line(tmp_path):
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}  # no GPU visible, whatever the machine has
    result = make("gpu-check", f"GPU_CHECK_OUT={tmp_path / 'x.json'}", f"GPU_PYTHON={sys.executable}", env=env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]  # make's own exit line
    assert len(lines) == 1 and "sees no CUDA GPU" in lines[0] and "DEVICE=cpu" in lines[0], result.stderr
    assert not (tmp_path / "x.json").exists()


def test_a_python_lacking_a_package_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    module = gpu_check_module()
    real = importlib.util.find_spec
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name, *a: None if name == "polars" else real(name, *a))
    assert module.main(["--device", "cpu", "--wheels", str(tmp_path / "none"), "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lacks polars" in err[0] and "make gpu-wheels" in err[0]


def test_wheels_are_extracted_and_put_first_on_the_path(tmp_path, monkeypatch):
    module = gpu_check_module()
    folder = tmp_path / "gpu-wheels"
    folder.mkdir()
    with zipfile.ZipFile(folder / "gpucheckfake-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("gpucheckfake/__init__.py", "VALUE = 42\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    module.use_wheels(folder)
    assert sys.path[0] == str(folder / "site")
    import gpucheckfake

    assert gpucheckfake.VALUE == 42
    sys.modules.pop("gpucheckfake")


def test_make_gpu_wheels_pins_the_locks_versions():
    result = make("-n", "gpu-wheels")
    lock = {line.split("==")[0]: line for line in (REPO / "requirements.lock").read_text().splitlines() if "==" in line}
    for package in ("polars", "polars-runtime-32", "pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions"):
        assert f" {lock[package]}" in result.stdout, result.stdout
    assert "--python-version 3.12" in result.stdout and "--only-binary=:all:" in result.stdout


def test_the_check_imports_nothing_the_cuda_image_lacks():
    """The image lacks dvc, great-expectations, gguf, tenacity, openai: the check must not import them."""
    code = (f"import sys, runpy; sys.argv = ['x', '--help']\n"
            f"sys.path[:0] = ['{REPO / 'src'}', '{REPO / 'bench'}', '{REPO / 'tests'}']\n"
            "import gpu_check, bench_gpu\n"
            "gpu_check._params()\n"
            "import emoneurons.evaluate.masking_eval, emoneurons.evaluate.steering, emoneurons.neurons.counting\n"
            "print(sorted(m for m in ('dvc', 'great_expectations', 'gguf', 'tenacity', 'openai') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
