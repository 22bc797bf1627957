"""The `emoneurons` command (pyproject's console script)."""

from __future__ import annotations

from pathlib import Path

import typer

from emoneurons.runtime.stage_run import one_line_errors

# Help texts are Markdown: a docstring's first line is the command's line in the overview, and its
# wrapped source lines join into paragraphs (rich mode would keep every line break of the source).
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
                  help="""emoneurons: emotion neurons in LLMs (Lee et al., Findings of ACL 2025).

The pipeline itself runs through DVC (`make run`, `dvc repro`, `dvc exp run -S key=value`); these
commands pull its results, sweep its params, compare runs and set several models side by side.""")


@app.callback()
def main() -> None:
    # A callback keeps each command a named subcommand (`emoneurons compare ...`), however few there are.
    pass


@app.command()
@one_line_errors
def compare(
    revs: list[str] = typer.Argument(
        ..., help="two or more git revisions or DVC experiment names ('workspace' = files on disk)"),
    out: Path = typer.Option(Path("reports/compare"), help="folder for figures/ and compare.md"),
    repo: Path = typer.Option(Path("."), help="the project's git/DVC repository"),
) -> None:
    """Overlay the paper's figures for several runs; write compare.md.

    Each revision is a git revision, a DVC experiment name or `workspace` (the files on disk); its
    metrics files are read there and drawn over the others' (reports/compare/)."""
    from emoneurons.report.compare.write import CompareError, write_comparison
    from emoneurons.runtime.revisions import load_run

    if len(revs) < 2:
        raise CompareError(f"compare needs at least two revisions, got {len(revs)}")
    runs = [load_run(repo, rev) for rev in revs]
    written = write_comparison(runs, out)
    typer.echo(f"wrote {written}/compare.md and {written}/figures/")


@app.command()
def pull(repo: Path = typer.Option(Path("."), help="the project's git/DVC repository")) -> None:
    """Pull the results and the run-cache from the DVC remote.

    `make run`'s first step, `dvc pull --allow-missing --run-cache`: outputs never computed in this
    clone are one line, not a warning each; DVC's errors pass as they are, with its exit status."""
    from emoneurons.runtime.dvc_runs import pull as quiet_pull

    raise typer.Exit(quiet_pull(repo))


@app.command()
@one_line_errors
def sweep(
    set_param: list[str] = typer.Option([], "--set-param", "-S", help="as dvc exp run -S: key=v1,v2,... (repeatable); "
                                        "experiments already queued run too"),
    jobs: int = typer.Option(2, "--jobs", "-j", min=1, help="queue workers"),
    timeout: float = typer.Option(0, min=0, help="give up after this many seconds (0: no limit)"),
    repo: Path = typer.Option(Path("."), help="the project's git/DVC repository"),
) -> None:
    """Queue a sweep of params and run it to the end.

    DVC's queue worker can stop with tasks still Queued (treeverse/dvc#10562), so it is started
    again while any waits. Prints each experiment's final status and a failed one's
    `dvc queue logs`; exits 1 when any did not succeed."""
    from emoneurons.runtime.dvc_runs import SweepError
    from emoneurons.runtime.dvc_runs import sweep as run_sweep

    final = run_sweep(set_param, jobs, repo, timeout=timeout)
    failed = [name for name, state in final.items() if state != "Success"]
    if failed:
        raise SweepError(f"sweep: {len(failed)} of {len(final)} experiments did not succeed: {', '.join(failed)}")
    typer.echo(f"sweep: all {len(final)} experiments succeeded; dvc exp show lists them")


@app.command()
@one_line_errors
def atlas(
    models: str = typer.Option("", "--models", help="models to set side by side, comma-separated model.id values, "
                               "e.g. embedded,embedded-gemma3; one experiment each, queued and run"),
    from_experiments: str = typer.Option("", "--from-experiments", help="comma-separated DVC experiments that already "
                                         "ran (one per model): rebuild the atlas from them, run nothing"),
    set_param: list[str] = typer.Option([], "--set-param", "-S", help="key=value for every model's experiment (repeatable)"),
    plan: Path | None = typer.Option(None, help="the atlas's plan: params set on every model (default presets/atlas/plan.yaml)"),
    jobs: int = typer.Option(2, "--jobs", "-j", min=1, help="queue workers"),
    timeout: float = typer.Option(0, min=0, help="give up waiting after this many seconds (0: no limit)"),
    out: Path = typer.Option(Path("reports/atlas"), help="folder for atlas.json, atlas.md, atlas.html and figures/"),
    repo: Path = typer.Option(Path("."), help="the project's git/DVC repository"),
) -> None:
    """Several models on the same data and plan, side by side.

    One report, reports/atlas/ (atlas.html, atlas.md, atlas.json, figures/); per model: emotion
    neurons by relative depth, the overlap of their top tokens, the paired effects and verdicts,
    steering with coherence, accuracy beside chance."""
    from emoneurons.report.atlas.write import write_atlas
    from emoneurons.runtime.atlas_runs import DEFAULT_PLAN, AtlasRunError, load_model_run, run_atlas_experiments

    def names(text: str) -> list[str]:
        return [n.strip() for n in text.split(",") if n.strip()]

    if bool(models) == bool(from_experiments):
        raise AtlasRunError("atlas: give --models (run them) or --from-experiments (rebuild), one of the two")
    if from_experiments:
        if set_param:
            raise AtlasRunError("atlas: -S applies to experiments it runs; --from-experiments runs none")
        experiments = names(from_experiments)
    else:
        experiments = list(run_atlas_experiments(names(models), set_param, repo, plan_path=plan or DEFAULT_PLAN, jobs=jobs,
                                                 timeout=timeout).values())
    runs = [load_model_run(repo, name) for name in experiments]
    written = write_atlas(runs, out if out.is_absolute() else repo / out)
    typer.echo(f"atlas: {', '.join(f'{r.model} ({r.experiment})' for r in runs)}; wrote {written}/atlas.html, "
               "atlas.md, atlas.json and figures/")


if __name__ == "__main__":
    app()
