"""The import-linter contracts in .importlinter hold (lint-imports exits 0), and the same contracts do
break on a copy of the package with one wrong-way import added (so a passing run means something)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.stage_runner import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path = REPO, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {})}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(REPO / ".importlinter")],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and "8 kept" in result.stdout


# (module in the copy, line appended to it, the broken contract's name, what lint-imports names)
WRONG_WAY = [
    ("io/tables.py", "import emoneurons.evaluate.boundary_states", "One order, bottom to top",
     "emoneurons.io.tables -> emoneurons.evaluate.boundary_states"),
    ("backends/chat.py", "def _backend():\n    from emoneurons.backends.factory import make_chat_backend\n",
     "The backend factory sits above the backends", "emoneurons.backends.chat -> emoneurons.backends.factory"),
    ("neurons/reference.py", "from emoneurons.neurons.counting import activation_counts",
     "The method on one page runs no accelerator", "emoneurons.neurons.reference -> emoneurons.neurons.counting"),
    ("unplaced.py", "", "One order, bottom to top", "emoneurons.unplaced"),  # a new module without a layer
    ("report/figures/figure1.py", "from emoneurons.report.document.blocks import Heading", "Report by feature",
     "emoneurons.report.figures.figure1 -> emoneurons.report.document.blocks"),  # two features of one run
]


@pytest.mark.parametrize(("module", "line", "contract", "named"), WRONG_WAY, ids=[w[0] for w in WRONG_WAY])
def test_a_wrong_way_import_breaks_the_contracts(tmp_path, module, line, contract, named):
    copy = tmp_path / "src" / "emoneurons"
    shutil.copytree(REPO / "src" / "emoneurons", copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / module
    path.write_text((path.read_text() if path.exists() else "") + "\n" + line + "\n")
    result = lint_imports(cwd=tmp_path, pythonpath=tmp_path / "src")  # the copy, not the installed package
    assert result.returncode != 0, result.stdout + result.stderr
    assert "1 broken" in result.stdout, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken and named in broken, result.stdout
