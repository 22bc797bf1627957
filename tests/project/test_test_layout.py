"""tests/ mirrors the package: a folder per library package under tests/unit/, each test folder on
pytest's pythonpath (tests import shared helpers by module name), and no two test files share a
name (they are imported by their bare name)."""

from __future__ import annotations

import tomllib
from collections import Counter

from stage_runner import REPO

TESTS = REPO / "tests"


def test_every_test_folder_is_on_the_pythonpath_and_every_name_is_unique():
    pythonpath = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["pythonpath"])
    folders = {str(d.relative_to(REPO)) for d in [TESTS, *TESTS.rglob("*")] if d.is_dir() and d.name != "__pycache__"}
    assert folders == pythonpath
    names = Counter(p.name for p in TESTS.rglob("*.py"))
    assert [name for name, n in names.items() if n > 1] == []


def test_each_library_package_has_its_unit_test_folder():
    packages = {p.parent.name for p in (REPO / "src" / "emoneurons").glob("*/__init__.py")}
    assert packages <= {d.name for d in (TESTS / "unit").iterdir() if d.is_dir()}
