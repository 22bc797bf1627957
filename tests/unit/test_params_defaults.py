"""No library default for what params.yaml sets: a library function that takes a value params.yaml
holds (SET_BY_PARAMS) gets it from its caller, so the pipeline's value is the only one. A prompt
format may default to None (none given: a bare dialogue has no format), never to a format; a seed
to None where only one kind of backend uses it. neurons/reference.py, the tests' independent
reference, is exempt."""

from __future__ import annotations

import ast
from pathlib import Path

import emoneurons

SOURCE = Path(emoneurons.__file__).parent
# params.yaml's keys that a library function takes under the same name (model.batch_size, model.max_length,
# eval.prompt_format, eval.max_new_tokens, eval.label_format, eval.recalibrate, select.assign,
# generate.max_turns, augment.max_retries, and the sections' seeds).
SET_BY_PARAMS = ("batch_size", "max_length", "prompt_format", "max_new_tokens", "label_format", "recalibrate", "assign",
                 "max_turns", "max_retries", "seed")
EXEMPT = {"neurons/reference.py"}


def defaulted(tree: ast.AST) -> list[tuple[str, str]]:
    """(function, parameter) for each parameter in SET_BY_PARAMS that has a default (other than None)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        args = node.args
        positional = args.posonlyargs + args.args
        defaults = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
        defaults += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        found += [(node.name, a.arg) for a, d in defaults
                  if a.arg in SET_BY_PARAMS and not (isinstance(d, ast.Constant) and d.value is None)]
    return found


def test_no_library_default_for_a_params_value() -> None:
    offenders = [f"{path.relative_to(SOURCE)}: {function}({name}=...)"
                 for path in sorted(SOURCE.rglob("*.py")) if str(path.relative_to(SOURCE)) not in EXEMPT
                 for function, name in defaulted(ast.parse(path.read_text()))]
    assert offenders == []


def test_the_scan_sees_a_default() -> None:
    tree = ast.parse("def f(a, batch_size: int = 16, *, max_length: int = 1024, b=1, prompt_format='auto'): pass\n"
                     "def g(prompt_format=None, batch_size=None): pass")
    assert defaulted(tree) == [("f", "batch_size"), ("f", "max_length"), ("f", "prompt_format")]


def test_count_takes_the_count_section_from_its_caller() -> None:
    """count.text, count.positions and count.activation: count_dialogues has no value of its own."""
    import inspect

    from emoneurons.neurons.counting import count_dialogues

    parameters = inspect.signature(count_dialogues).parameters
    assert {name: parameters[name].default for name in ("text", "positions", "activation")} == dict.fromkeys(
        ("text", "positions", "activation"), inspect.Parameter.empty)
