"""tests/ mirrors the package: a folder per library package under tests/unit/; what test files
share lives in tests/helpers/, so no test module (nor conftest.py) is imported by another file and
only tests/ is on pytest's pythonpath; no two test files share a name (pytest imports each by its
bare name)."""

from __future__ import annotations

import ast
import tomllib
from collections import Counter

from helpers.stage_runner import REPO

TESTS = REPO / "tests"


def imported_test_modules(source: str) -> list[str]:
    """The test modules (test_*, conftest) that `source` imports, at any depth of the file."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        for name in names:
            leaf = name.split(".")[-1]
            if leaf.startswith("test_") or leaf == "conftest" or name.split(".")[0].startswith("test_"):
                found.append(name)
    return found


def test_the_rule_sees_each_way_of_importing_a_test_module():
    assert imported_test_modules("from test_figures import synthetic_run") == ["test_figures"]
    assert imported_test_modules("def f():\n    from conftest import build_tiny_llama") == ["conftest"]
    assert imported_test_modules("import test_conditions as c") == ["test_conditions"]
    assert imported_test_modules("from unit.report.test_figures import png_size") == ["unit.report.test_figures"]
    assert imported_test_modules("from helpers.synthetic_run import synthetic_run\nimport testing") == []


def test_no_file_imports_a_test_module_and_only_tests_is_on_the_pythonpath():
    files = [p for p in [*TESTS.rglob("*.py"), *(REPO / "bench").rglob("*.py")] if "__pycache__" not in p.parts]
    offending = {str(p.relative_to(REPO)): found for p in files if (found := imported_test_modules(p.read_text()))}
    assert offending == {}, "import shared helpers from tests/helpers/, not from a test module"
    pythonpath = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["pythonpath"]
    assert pythonpath == ["tests"]
    assert not [p for p in (TESTS / "helpers").glob("*.py") if p.name.startswith("test_")]  # helpers hold no tests


def test_every_test_file_name_is_unique():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, n in names.items() if n > 1] == []


def test_each_library_package_has_its_unit_test_folder():
    packages = {p.parent.name for p in (REPO / "src" / "emoneurons").glob("*/__init__.py")}
    assert packages <= {d.name for d in (TESTS / "unit").iterdir() if d.is_dir()}
