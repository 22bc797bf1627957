"""One way a stage (or an `emoneurons` command) ends on bad input: the library's errors all derive
from errors.EmoneuronsError, runtime/stage_run.py turns any of them into its one line on stderr and
exit status 1, a bug still shows its traceback, and no stage script or command catches errors itself."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import sys

import pytest
import typer

import emoneurons
from emoneurons.errors import EmoneuronsError
from emoneurons.io.atomic import OutputError
from emoneurons.io.tables import DataError
from emoneurons.params import ParamsError
from emoneurons.runtime.stage_run import one_line_errors, run_stage
from helpers.stage_runner import REPO


def _library_errors() -> list[type[BaseException]]:
    classes = set()
    for info in pkgutil.walk_packages(emoneurons.__path__, "emoneurons."):
        module = importlib.import_module(info.name)
        classes |= {c for _, c in inspect.getmembers(module, inspect.isclass)
                    if issubclass(c, BaseException) and c.__module__ == info.name}
    return sorted(classes, key=lambda c: f"{c.__module__}.{c.__name__}")


def test_every_library_error_derives_from_the_one_base():
    errors = _library_errors()
    # OutputError is the disk's, not the input's (an OSError; run_stage names the stage and the output);
    # a private error never leaves its module.
    others = [f"{c.__module__}.{c.__name__}" for c in errors
              if not issubclass(c, EmoneuronsError) and c is not OutputError and not c.__name__.startswith("_")]
    assert others == []
    assert len(errors) > 20 and DataError in errors and ParamsError in errors


def _run(main, monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", ["stage"])
    with pytest.raises(SystemExit) as exit_:
        run_stage(main, "stage")
    return exit_.value.code


@pytest.mark.parametrize("error", [DataError("data/x.json: y is missing"), ParamsError("params.yaml: y: unknown key")])
def test_a_library_error_ends_the_stage_in_its_one_line_and_exit_1(error, monkeypatch, capsys):
    def main() -> None:
        raise error

    assert _run(main, monkeypatch) == 1
    assert capsys.readouterr().err == f"{error}\n"


def test_a_bug_is_not_swallowed(monkeypatch):
    def main() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        _run(main, monkeypatch)


def test_a_command_ends_in_the_same_one_line(capsys):
    @one_line_errors
    def command(name: str = "x") -> None:
        raise DataError(f"{name}: not found")

    with pytest.raises(typer.Exit) as exit_:
        command("y")
    assert exit_.value.exit_code == 1 and capsys.readouterr().err == "y: not found\n"
    assert inspect.signature(command).parameters["name"].default == "x"  # typer reads the options from it


def test_no_stage_script_or_command_catches_errors_itself():
    """Every stage's main and every command is its options, library calls and outputs: no except
    clause, no typer.Exit(1) of its own."""
    offending = []
    for path in [*sorted((REPO / "stages").glob("*.py")), REPO / "src" / "emoneurons" / "cli.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler):
                offending.append(f"{path.name}:{node.lineno} except")
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("Exit") and \
                    [ast.unparse(a) for a in node.args] == ["1"]:
                offending.append(f"{path.name}:{node.lineno} Exit(1)")
    assert offending == []


def test_a_model_the_library_cannot_serve_is_named_by_its_params_file_and_key():
    from emoneurons.model.architecture import UnsupportedModelError
    from emoneurons.runtime.stage_run import model_from

    with pytest.raises(UnsupportedModelError) as error, model_from(REPO / "params.yaml", "owner/gpt2"):
        raise UnsupportedModelError("GPT2LMHeadModel: no gated FFN; allowed: Llama")
    assert str(error.value) == f"{REPO / 'params.yaml'}: model.id 'owner/gpt2': GPT2LMHeadModel: no gated FFN; allowed: Llama"
    with pytest.raises(DataError, match="^x$"), model_from(REPO / "params.yaml", "owner/gpt2"):
        raise DataError("x")  # any other error passes as it is


def test_a_metrics_file_without_a_key_the_report_reads_is_one_line():
    from emoneurons.report.errors import ReportDataError, metrics_keys_named

    with pytest.raises(ReportDataError, match=r"^a metrics file lacks the key 'accuracy' \(see docs/CONTRACTS.md\)$"), \
            metrics_keys_named():
        {}["accuracy"]
