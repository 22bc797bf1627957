"""dvc.yaml lists, for each stage, exactly its script and the library modules it imports
(transitively), so editing plotting code does not rerun counting and no used module is missed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emoneurons"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("emoneurons")}
    return names


def _module_file(name: str) -> Path | None:
    base = SRC / name.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def package_data(path: Path) -> set[Path]:
    """Package data files a library module names by their path beside it ("template_data/topics.json")."""
    names = {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    relative = {name for name in names if re.fullmatch(r"[\w.-]+(/[\w.-]+)+", name)}
    return {path.parent / name for name in relative if (path.parent / name).is_file()}


def library_files(script: Path) -> set[str]:
    """Library modules a stage script imports, directly or through other library modules, and the
    package data files they read."""
    seen: set[Path] = set()
    todo = [_module_file(n) for n in _imported(script)]
    while todo:
        path = todo.pop()
        if path is None or path in seen:
            continue
        seen.add(path)
        todo += [_module_file(n) for n in _imported(path)]
    data = {d for p in seen if p.is_relative_to(SRC) for d in package_data(p)}
    return {str(p.relative_to(REPO)) for p in seen | data if p.name != "__init__.py" or p.read_text().strip()}


def covered(dep: str, deps: list[str]) -> bool:
    return any(dep == d or dep.startswith(d.rstrip("/") + "/") for d in deps)


def test_every_stage_depends_on_exactly_the_code_it_runs():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        script = stage["cmd"].split()[-1]
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]
        code_deps = {d for d in deps if d.startswith(("src/", "stages/"))}
        needed = library_files(REPO / script) | {script}
        missing = sorted(n for n in needed if not covered(n, sorted(code_deps)))
        assert not missing, f"stage {name}: dvc.yaml deps miss {missing}"
        extra = sorted(d for d in code_deps if not any(covered(n, [d]) for n in needed))
        assert not extra, f"stage {name}: dvc.yaml deps list unused code {extra}"


def test_filter_depends_on_the_folder_imported_data_sets_must_live_in():
    from emoneurons.params import EXTERNAL_DATA, EmoPrismParams

    filter_deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["filter"]["deps"]
    assert EXTERNAL_DATA in filter_deps
    assert covered(EmoPrismParams().path, [EXTERNAL_DATA])
    assert (REPO / EXTERNAL_DATA).is_dir()  # a missing dep folder would stop `dvc repro`
