"""No library default for what params.yaml sets: a library function that takes a value params.yaml
holds (model.batch_size, model.max_length, eval.prompt_format) gets it from its caller, so the
pipeline's value is the only one. neurons/reference.py, the tests' independent reference, is exempt."""

from __future__ import annotations

import ast
from pathlib import Path

import emoneurons

SOURCE = Path(emoneurons.__file__).parent
SET_BY_PARAMS = ("batch_size", "max_length")
EXEMPT = {"neurons/reference.py"}


def defaulted(tree: ast.AST) -> list[tuple[str, str]]:
    """(function, parameter) for each parameter in SET_BY_PARAMS that has a default."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        args = node.args
        positional = args.posonlyargs + args.args
        with_default = [a.arg for a in positional[len(positional) - len(args.defaults):]]
        with_default += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        found += [(node.name, name) for name in with_default if name in SET_BY_PARAMS]
    return found


def test_no_library_default_for_a_params_value() -> None:
    offenders = [f"{path.relative_to(SOURCE)}: {function}({name}=...)"
                 for path in sorted(SOURCE.rglob("*.py")) if str(path.relative_to(SOURCE)) not in EXEMPT
                 for function, name in defaulted(ast.parse(path.read_text()))]
    assert offenders == []


def test_the_scan_sees_a_default() -> None:
    tree = ast.parse("def f(a, batch_size: int = 16, *, max_length: int = 1024, b=1): pass")
    assert defaulted(tree) == [("f", "batch_size"), ("f", "max_length")]
