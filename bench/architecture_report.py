"""The numbers behind docs/ARCHITECTURE.md: every import inside src/emoneurons that runs against
the layers of .importlinter's `layers` contract (upward, between independent siblings) or closes a
cycle between two modules (which lint-imports does not check inside one layer), and the longest
files and functions, and the modules loose at the package root.

    .venv/bin/python bench/architecture_report.py
"""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def contract_layers() -> list[tuple[list[str], bool]]:
    """The `layers` contract of .importlinter, bottom first: (top-level module names, independent)."""
    config = configparser.ConfigParser()
    config.read(REPO / ".importlinter")
    rows = [line.strip() for line in config["importlinter:contract:layers"]["layers"].splitlines() if line.strip()]
    return [([name.strip("() ") for name in re.split(r"[|:]", row)], "|" in row) for row in reversed(rows)]


def layer(module: str) -> tuple[int, int]:
    """(row of the layers contract, bottom = 0; the sibling's index within an independent row, else 0)."""
    top = module.split(".")[1] if module.count(".") else module
    for row, (names, independent) in enumerate(contract_layers()):
        if top in names:
            return row, names.index(top) if independent else 0
    raise KeyError(f"{module}: no layer; add it to the layers contract in .importlinter")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported emoneurons module, deferred: inside a function) of one file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emoneurons"):
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("emoneurons")]
        deferred = id(node) not in top and not any(id(node) in {id(n) for n in ast.walk(t)} for t in tree.body
                                                   if isinstance(t, ast.If))  # `if TYPE_CHECKING:` blocks count as top
        found += [(name, deferred) for name in names]
    return found


def graph() -> dict[str, list[tuple[str, bool]]]:
    return {module_name(p): imports(p) for p in sorted(SRC.rglob("*.py"))}


def violations() -> list[tuple[str, str, str]]:
    """(importer, imported, why) for each import that goes up a layer, crosses between independent
    siblings, or closes a cycle between two modules (lint-imports checks the first two as well)."""
    edges = graph()
    rows = []
    for source, targets in edges.items():
        for target, deferred in targets:
            if target not in edges or target == source:
                continue
            (a, i), (b, j) = layer(source), layer(target)
            if b > a:
                why = "upward"
            elif b == a and i != j:
                why = "between independent siblings"
            elif any(t == source for t, _ in edges[target]):
                why = "cycle: each imports the other"
            else:
                continue
            if (source, target) not in {(r[0], r[1]) for r in rows}:
                rows.append((source, target, why + (" (deferred import)" if deferred else "")))
    return rows


def longest() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    files, functions = [], []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        name = str(path.relative_to(SRC.parent))
        files.append((len(text.splitlines()), name))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((node.end_lineno - node.lineno + 1, f"{name}:{node.lineno} {node.name}"))
    return sorted(files, reverse=True)[:5], sorted(functions, reverse=True)[:5]


if __name__ == "__main__":
    rows = violations()
    print(f"imports against the layers of .importlinter (or cycles): {len(rows)}")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    files, functions = longest()
    print("\nlongest files:", *(f"  {n} lines  {name}" for n, name in files), sep="\n")
    print("longest functions:", *(f"  {n} lines  {name}" for n, name in functions), sep="\n")
    root = sorted(p.stem for p in (SRC / "emoneurons").glob("*.py") if p.stem != "__init__")
    print(f"modules at the package root: {len(root)} ({', '.join(root)})")
