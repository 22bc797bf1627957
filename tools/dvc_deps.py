"""dvc.yaml's code deps, generated from the imports: each stage depends on its script and exactly
the library modules it imports (transitively), plus the package data files those modules read.

    python tools/dvc_deps.py          # rewrite dvc.yaml's code deps in place (`make deps`)
    python tools/dvc_deps.py --check  # exit 1, naming each stage that differs

Only the `stages/…` and `src/…` lines of each stage's `deps:` are rewritten (script first, then
the modules sorted); data deps, params, outs and comments stay as they are. tests/project/test_dvc_yaml.py
compares the committed file with what this writes, so a module move is one command.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
CODE_PREFIXES = ("src/", "stages/")


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emoneurons"):
            names.add(node.module)
            # `from emoneurons.pkg import module` imports a module too
            names |= {f"{node.module}.{a.name}" for a in node.names}
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
    package data files they read (repo-relative paths; empty __init__.py files left out)."""
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


def code_deps(script: str) -> list[str]:
    """A stage's code deps in dvc.yaml's order: its script, then its library files sorted."""
    return [script, *sorted(library_files(REPO / script))]


def generated(text: str) -> str:
    """dvc.yaml's text with every stage's code deps replaced by `code_deps` of its script."""
    stages = yaml.safe_load(text)["stages"]
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    stage: str | None = None
    in_deps = False
    written = False
    for line in lines:
        head = re.match(r"^  (\w[\w-]*):\s*$", line)
        if head:
            stage, in_deps, written = head.group(1), False, False
        elif stage and re.match(r"^    deps:\s*$", line):
            in_deps = True
        elif stage and re.match(r"^    \w", line):
            in_deps = False
        item = re.match(r"^(    - )(\S+)\s*$", line) if in_deps else None
        if item and item.group(2).startswith(CODE_PREFIXES):
            if not written:
                script = stages[stage]["cmd"].split()[-1]
                out += [f"{item.group(1)}{dep}\n" for dep in code_deps(script)]
                written = True
            continue
        out.append(line)
    return "".join(out)


def main(argv: list[str]) -> int:
    path = REPO / "dvc.yaml"
    text = path.read_text()
    new = generated(text)
    if "--check" in argv:
        if new != text:
            old_stages, new_stages = yaml.safe_load(text)["stages"], yaml.safe_load(new)["stages"]
            differ = [s for s in old_stages if old_stages[s].get("deps") != new_stages[s].get("deps")]
            print(f"dvc.yaml: code deps differ from the imports in stage(s) {', '.join(differ)}; run `make deps`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        path.write_text(new)
        print("dvc.yaml: code deps rewritten from the imports")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
