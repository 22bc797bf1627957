"""How a stage script (or an `emoneurons` command) ends when it cannot finish: a library error
(errors.EmoneuronsError: a params key, a file or record, a model it cannot serve), an output that
cannot be written (disk full, read-only folder) or Ctrl-C gives one line on stderr that says what is
wrong, or where the work stands and how to resume, never a traceback; the stage's outputs are
written atomically, so nothing partial is left. A stage script catches no error itself."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

import typer

from emoneurons.errors import EmoneuronsError
from emoneurons.io.atomic import OutputError
from emoneurons.model.versions import UnsupportedVersionError

_P = ParamSpec("_P")
_R = TypeVar("_R")

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


def cached_answers(cache: Path) -> int:
    """LLM answers stored in a stage's request cache (one JSON file each)."""
    return sum(1 for _ in cache.glob("??/*.json")) if cache.is_dir() else 0


def interrupted_message(stage: str, cache: Path | None) -> str:
    """One line for Ctrl-C: what is kept, what is not, and how to resume."""
    if cache is not None:
        kept = f"the {cached_answers(cache)} LLM answers received so far are kept in {cache} and will not be asked again"
    else:
        kept = "it keeps no partial state, so it starts over"
    return (
        f"{stage}: interrupted (Ctrl-C); none of its outputs was written or changed; {kept}; "
        "run `dvc repro` (or this script) again to resume"
    )


def stage_app(main: Callable[..., None]) -> typer.Typer:
    """The stage script's command: `main`'s options, and its script's docstring as --help's text
    (Markdown, so the docstring's wrapped lines join into paragraphs)."""
    app = typer.Typer(add_completion=False, rich_markup_mode="markdown")
    app.command(help=main.__globals__.get("__doc__"))(main)
    return app


@contextmanager
def stage_ending(stage: str, cache: Path | None = None, *, name_errors: bool = False) -> Iterator[None]:
    """What run_stage does when a stage's main cannot finish: a library error, an output that cannot
    be written or Ctrl-C is one line on stderr and SystemExit 1 (130 for Ctrl-C). Tests run a
    stage's main in-process under it."""
    import click

    try:
        yield
    except click.exceptions.Abort:
        print(interrupted_message(stage, cache), file=sys.stderr)
        sys.exit(INTERRUPTED)
    except KeyboardInterrupt:  # raised after click's own handling (e.g. while exiting)
        print(interrupted_message(stage, cache), file=sys.stderr)
        sys.exit(INTERRUPTED)
    except OutputError as error:
        print(f"{stage}: {error.strerror}", file=sys.stderr)
        sys.exit(1)
    except UnsupportedVersionError as error:  # load_model's check: a torch/transformers outside the range
        print(f"{stage}: {error}", file=sys.stderr)
        sys.exit(1)
    except EmoneuronsError as error:  # its line names the file, key or record and what is allowed
        print(f"{stage}: {error}" if name_errors else error, file=sys.stderr)
        sys.exit(1)


def run_stage(main: Callable[..., None], stage: str, cache: Path | None = None, *, name_errors: bool = False) -> None:
    """typer.run(main), ended by stage_ending: a library error, OutputError and Ctrl-C in one line
    (exit 1 / 130). `cache`: the stage's default LLM request cache, whose entries a rerun reuses.
    `name_errors`: a library error's line starts with the stage's name (plot, which reads every
    stage's outputs)."""
    import click

    app = stage_app(main)
    with stage_ending(stage, cache, name_errors=name_errors):
        try:
            # Not standalone: click would turn Ctrl-C into a bare "Aborted!".
            code = typer.main.get_command(app).main(standalone_mode=False)
        except click.ClickException as error:  # a bad command-line option
            error.show()
            sys.exit(error.exit_code)
    if code == INTERRUPTED:  # typer turns Ctrl-C inside the command into Exit(130)
        print(interrupted_message(stage, cache), file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


def one_line_errors(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """An `emoneurons` command whose library errors end it in their one line on stderr and exit 1."""

    @functools.wraps(command)  # typer reads the options from the wrapped signature
    def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return command(*args, **kwargs)
        except EmoneuronsError as error:
            typer.echo(str(error), err=True)
            raise typer.Exit(1) from None

    return wrapped


@contextmanager
def model_from(params: Path, model_id: str) -> Iterator[None]:
    """A model the library cannot serve (no gated FFN to count or mask) is named by the params
    file and key it came from: `params.yaml: model.id 'x': <the library's line>`."""
    from emoneurons.model.architecture import UnsupportedModelError  # torch: only where a model is loaded

    try:
        yield
    except UnsupportedModelError as error:
        raise UnsupportedModelError(f"{params}: model.id {model_id!r}: {error}") from None
