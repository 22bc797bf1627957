"""The numbers behind docs/ARCHITECTURE.md: every import inside src/emoneurons that runs against
the target layers (upward, or a cycle between siblings), the modules that sit in the wrong
package, and the longest files and functions.

    .venv/bin/python bench/architecture_report.py
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = ("core", "data", "generation", "neurons", "evaluate", "report", "entry")
# Modules whose target layer is not their package's (they move in the restructuring).
TARGET = {
    "emoneurons.prompts.chat": "core",  # the paper's prompts as token ids
    "emoneurons.model.loading": "core",  # loading the model: part of the model adapter
    "emoneurons.model.architecture": "core",  # the model adapter
}
BY_PACKAGE = {
    "emoneurons.emotions": "core", "emoneurons.params": "core", "emoneurons.prompt_format": "core",
    "emoneurons.atomic": "core", "emoneurons.data": "data", "emoneurons.topics": "generation",
    "emoneurons.dialogues": "generation", "emoneurons.filtering": "generation", "emoneurons.backends": "generation",
    "emoneurons.neurons": "neurons", "emoneurons.evaluate": "evaluate", "emoneurons.report": "report",
    "emoneurons.cli": "entry",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str, target: bool) -> str:
    """The module's layer today (by its package), or its target layer (after the moves)."""
    if target and module in TARGET:
        return TARGET[module]
    for prefix in sorted(BY_PACKAGE, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return BY_PACKAGE[prefix]
    raise KeyError(f"{module}: no layer; add it to BY_PACKAGE")


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


def violations() -> list[tuple[str, str, str, str]]:
    """(importer, imported, today, after the moves) for each import that goes up a layer, or that
    closes a cycle between two modules."""
    edges = graph()
    rows = []
    for source, targets in edges.items():
        for target, deferred in targets:
            if target not in edges:
                continue
            verdicts = []
            for moved in (False, True):
                a, b = layer(source, moved), layer(target, moved)
                if LAYERS.index(b) > LAYERS.index(a):
                    verdicts.append(f"upward: {a} imports {b}")
                elif any(t == source for t, _ in edges[target]):
                    verdicts.append("cycle: each imports the other")
                else:
                    verdicts.append("ok")
            if verdicts != ["ok", "ok"] and (source, target) not in {(r[0], r[1]) for r in rows}:
                how = " (deferred import)" if deferred else ""
                rows.append((source, target, verdicts[0] + how, verdicts[1]))
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
    print("| importer | imported | today | after the moves |\n|---|---|---|---|")
    for row in violations():
        print("| " + " | ".join(row) + " |")
    files, functions = longest()
    print("\nlongest files:", *(f"  {n} lines  {name}" for n, name in files), sep="\n")
    print("longest functions:", *(f"  {n} lines  {name}" for n, name in functions), sep="\n")
