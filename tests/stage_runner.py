"""The repository root, and the one way tests run a stage script as dvc.yaml does: this Python on
stages/<name>.py in a project folder (`cwd`), output captured as text, bounded in time."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def stage_script(name: str) -> Path:
    return REPO / "stages" / f"{name}.py"


def run_stage_script(name: str, *args: object, cwd: str | Path, timeout: float = 300, env: Mapping[str, str] | None = None,
              isolated: bool = False) -> subprocess.CompletedProcess:
    """stages/<name>.py with `args` (str() of each) in `cwd`. `isolated`: python -P, so stages/ on
    sys.path cannot shadow the standard library (stages/select.py would shadow `select`)."""
    command = [sys.executable, *(["-P"] if isolated else []), str(stage_script(name)), *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=None if env is None else dict(env), capture_output=True, text=True,
                          timeout=timeout)
