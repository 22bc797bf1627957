"""The `emoneurons` command (pyproject's console script)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="emoneurons: emotion neurons in LLMs (Lee et al., Findings of ACL 2025).")


@app.callback()
def main() -> None:
    """Keep `compare` a named subcommand even while it is the only one."""


@app.command()
def compare(
    revs: list[str] = typer.Argument(
        ..., help="two or more git revisions or DVC experiment names ('workspace' = files on disk)"),
    out: Path = typer.Option(Path("reports/compare"), help="folder for figures/ and compare.md"),
    repo: Path = typer.Option(Path("."), help="the project's git/DVC repository"),
) -> None:
    """Overlay the paper's figures for several runs and write a compare.md."""
    from emoneurons.report.compare import CompareError, load_run, write_comparison

    try:
        if len(revs) < 2:
            raise CompareError(f"compare needs at least two revisions, got {len(revs)}")
        runs = [load_run(repo, rev) for rev in revs]
        written = write_comparison(runs, out)
    except CompareError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {written}/compare.md and {written}/figures/")


if __name__ == "__main__":
    app()
