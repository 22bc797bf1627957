"""The repository root, the one way tests run a stage script as dvc.yaml does (this Python on
stages/<name>.py in a project folder, output captured as text, bounded in time) or call its main()
in this process, and the one way they run any other command (git, dvc, make) in a project."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def stage_script(name: str) -> Path:
    return REPO / "stages" / f"{name}.py"


def run_stage_script(name: str, *args: object, cwd: str | Path, timeout: float = 300, env: Mapping[str, str] | None = None,
              isolated: bool = False, merged: bool = False) -> subprocess.CompletedProcess:
    """stages/<name>.py with `args` (str() of each) in `cwd`. `isolated`: python -P, so stages/ on
    sys.path cannot shadow the standard library (stages/select.py would shadow `select`). `merged`:
    stderr into stdout, one stream as a log file of `dvc repro` has it, a progress bar's carriage
    returns kept (text mode would turn each into a newline); stderr is then None."""
    command = [sys.executable, *(["-P"] if isolated else []), str(stage_script(name)), *map(str, args)]
    env = None if env is None else dict(env)
    if not merged:
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    result = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), None)


def stage_main(name: str):
    """A stage script's main(), to run in this process (no interpreter start-up to pay)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run_command(args: list[str], cwd: str | Path, env: Mapping[str, str], check: bool = True,
                timeout: float | None = None) -> subprocess.CompletedProcess:
    """`args` in `cwd` with `env`, output captured as text; `check`: an AssertionError with the
    command and both outputs when it fails. `timeout`: seconds (None: pytest's per-test timeout)."""
    result = subprocess.run(args, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result
