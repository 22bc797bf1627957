"""How a stage script ends when it cannot finish: an output that cannot be written (disk full,
read-only folder), a torch or transformers outside the supported range, or Ctrl-C gives one line
on stderr that says where the work stands and how to resume, never a traceback; the stage's
outputs are written atomically, so nothing partial is left."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import typer

from emoneurons.io.atomic import OutputError
from emoneurons.model.versions import UnsupportedVersionError

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


def run_stage(main: Callable[..., None], stage: str, cache: Path | None = None) -> None:
    """typer.run(main), with OutputError and Ctrl-C reported in one line (exit 1 / 130).
    `cache`: the stage's default LLM request cache, whose entries a rerun reuses."""
    import click

    app = stage_app(main)
    try:
        # Not standalone: click would turn Ctrl-C into a bare "Aborted!".
        code = typer.main.get_command(app).main(standalone_mode=False)
    except click.exceptions.Abort:
        print(interrupted_message(stage, cache), file=sys.stderr)
        sys.exit(INTERRUPTED)
    except KeyboardInterrupt:  # raised after click's own handling (e.g. while exiting)
        print(interrupted_message(stage, cache), file=sys.stderr)
        sys.exit(INTERRUPTED)
    except click.ClickException as error:  # a bad command-line option
        error.show()
        sys.exit(error.exit_code)
    except OutputError as error:
        print(f"{stage}: {error.strerror}", file=sys.stderr)
        sys.exit(1)
    except UnsupportedVersionError as error:  # load_model's check: a torch/transformers outside the range
        print(f"{stage}: {error}", file=sys.stderr)
        sys.exit(1)
    if code == INTERRUPTED:  # typer turns Ctrl-C inside the command into Exit(130)
        print(interrupted_message(stage, cache), file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)
