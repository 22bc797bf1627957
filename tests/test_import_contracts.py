"""The import-linter contracts in .importlinter hold (lint-imports exits 0), and lint-imports does
fail on a broken contract (so a passing run means something)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and " kept" in result.stdout


def test_lint_imports_fails_on_a_broken_contract(tmp_path):
    # Broken on purpose: counting does import the classification prompt.
    config = tmp_path / "broken.ini"
    config.write_text(
        "[importlinter]\nroot_package = emoneurons\n\n"
        "[importlinter:contract:broken]\nname = neurons import nothing from evaluate\ntype = forbidden\n"
        "source_modules =\n    emoneurons.neurons.counting\nforbidden_modules =\n    emoneurons.prompts\n"
    )
    result = lint_imports("--config", str(config))
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "emoneurons.neurons.counting -> emoneurons.prompts.classification" in result.stdout
