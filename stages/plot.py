"""plot: the paper's figures and tables, report.md, dvc plots data and an offline HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from emoneurons.io.artifacts import (
    CARDS,
    COUNT_META,
    DIRECTIONS,
    EVAL,
    FIGURES,
    FILTER_REPORT,
    NEURON_COUNTS,
    NEURONS,
    PLOTS,
    REPORT,
    REPORT_PAGE,
    STEER,
)
from emoneurons.io.atomic import atomic_dir, atomic_path, output_errors
from emoneurons.io.cards_file import CardsFile, read_cards
from emoneurons.io.directions_file import DirectionsFile, read_directions
from emoneurons.io.eval_file import read_eval
from emoneurons.io.neurons_file import read_neurons
from emoneurons.io.steer_file import SteerFile, read_steer
from emoneurons.io.tables import read_json
from emoneurons.params import load_params
from emoneurons.runtime.stage_run import run_stage

if TYPE_CHECKING:  # imported at run time only once the inputs are there (see main)
    from emoneurons.report.results.run import RunMetrics


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params.yaml (model name, digest)"),
    filter_json: Path = typer.Option(Path(FILTER_REPORT.path)),
    meta: Path = typer.Option(Path(COUNT_META.path)),
    neurons: Path = typer.Option(Path(NEURONS.path)),
    eval_json: Path = typer.Option(Path(EVAL.path)),
    neuron_metrics: Path = typer.Option(Path(NEURON_COUNTS.path)),
    cards_json: Path = typer.Option(Path(CARDS.path)),
    steer_json: Path = typer.Option(Path(STEER.path)),
    directions_json: Path = typer.Option(Path(DIRECTIONS.path)),
    figures: Path = typer.Option(Path(FIGURES.path)),
    plots: Path = typer.Option(Path(PLOTS.path)),
    report: Path = typer.Option(Path(REPORT.path)),
    html: Path = typer.Option(Path(REPORT_PAGE.path)),
) -> None:
    raw = {"filter": read_json(filter_json), "meta": read_json(meta),
           "neurons": read_neurons(neurons), "eval": read_eval(eval_json),
           "neuron_metrics": read_json(neuron_metrics)}
    # The cards and steer stages' outputs (always there under `dvc repro`); a plot run without
    # them, on metrics alone, leaves their section out.
    cards = read_cards(cards_json) if cards_json.exists() else None
    steer = read_steer(steer_json) if steer_json.exists() else None
    # The directions stage's summary (always there under `dvc repro`; off, or absent: no section).
    directions = read_directions(directions_json) if directions_json.exists() else None
    validated = load_params(params)
    # Imported only once the inputs are there: torch and matplotlib take seconds to load.
    from emoneurons.report.errors import metrics_keys_named
    from emoneurons.report.results.run import RunMetrics

    with metrics_keys_named():
        write_outputs(RunMetrics(**raw, params=validated), cards, steer, figures, plots, report, html, directions)
    typer.echo(f"plot: wrote {figures}/, {plots}/, {report}, {html}", err=True)


def write_outputs(
    run: RunMetrics, cards: CardsFile | None, steer: SteerFile | None, figures: Path, plots: Path, report: Path, html: Path,
    directions: DirectionsFile | None = None,
) -> None:
    """The figures, plots data, report.md and index.html of one run; the steering
    figure and the beyond-ablation section only when the cards and steer outputs are there; the
    directions figure and section only when the directions stage ran (directions.enabled)."""
    from emoneurons.report.directions.figure import save_directions_figure
    from emoneurons.report.directions.section import directions_blocks
    from emoneurons.report.document.html import render_html
    from emoneurons.report.document.markdown import render_markdown
    from emoneurons.report.document.run_report import build_report
    from emoneurons.report.figures.paper_figures import build_figures
    from emoneurons.report.figures.plots_data import plots_data, write_plots_data
    from emoneurons.report.results.run import model_name
    from emoneurons.report.steering.figure import save_steering_figure
    from emoneurons.report.steering.section import beyond_ablation_blocks
    from emoneurons.report.style import save_figure

    # Every output is built in temporary siblings and only renamed into place once all four
    # are complete, so a failure leaves the previous outputs (or none), never a mix. A failed
    # write (full disk, read-only folder) names the output it was writing (output_errors) and
    # run_stage says it in one line.
    with (
        atomic_dir(figures) as figures_tmp, atomic_dir(plots) as plots_tmp,
        atomic_path(report) as report_tmp, atomic_path(html) as html_tmp,
    ):
        with output_errors(figures, rename_inner=True):
            for name, figure in build_figures(run.filter, run.neurons, run.eval, model_name(run)).items():
                save_figure(figure, figures_tmp, name)
        with output_errors(plots):
            write_plots_data(plots_tmp, plots_data(run.neurons, run.eval))
        blocks = build_report(run)
        if cards is not None and steer is not None:
            with output_errors(figures, rename_inner=True):
                save_steering_figure(steer, figures_tmp)
            blocks += beyond_ablation_blocks(cards, steer)
        if directions is not None and directions.enabled:
            with output_errors(figures, rename_inner=True):
                save_directions_figure(directions, figures_tmp)
            blocks += directions_blocks(directions)
        with output_errors(report):
            report_tmp.write_text(render_markdown(blocks))
        html_tmp.write_text(render_html(blocks, figures_tmp, f"emoneurons: {model_name(run)}"))


if __name__ == "__main__":
    run_stage(main, "plot", name_errors=True)
