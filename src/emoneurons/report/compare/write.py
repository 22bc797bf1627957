"""`emoneurons compare`'s output: compare.md (the runs' settings, each emotion's own-mask change
and neuron counts) and the overlaid figures, under one folder written whole or not at all."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from emoneurons.emotions import EMOTIONS
from emoneurons.errors import EmoneuronsError
from emoneurons.io.atomic import atomic_dir
from emoneurons.io.tables import DataError
from emoneurons.report.compare.figures import RunAtRev, compare_figures
from emoneurons.report.document.blocks import Heading, Image, Paragraph, Table
from emoneurons.report.document.markdown import render_markdown
from emoneurons.report.document.number_formats import pct, pp
from emoneurons.report.errors import ReportDataError
from emoneurons.report.results.accuracy import rq2_view
from emoneurons.report.style import save_figure


class CompareError(EmoneuronsError, ValueError):
    """Runs that cannot be compared, or a metrics file that lacks what compare draws (one line)."""


def compare_markdown(runs: Sequence[RunAtRev]) -> str:
    names = [run.name for run in runs]
    rows = []
    for run in runs:
        top_rate = run.neurons.top_rate
        view = rq2_view(run.eval, top_rate)
        base = view["unmodified"]["accuracy"]
        rows.append((
            run.name, str(run.eval.model), str(run.eval.n_test),
            f"{run.eval.method}/{run.eval.shots}", f"{100 * top_rate:g}",
            pct(base["overall"]),
            *(pp(100 * (view["masked"][e]["accuracy"][e] - base[e])) if e in view["masked"]
              else "n/a" for e in EMOTIONS),
        ))
    neuron_rows = []
    for run in runs:
        selected = run.neurons.selection(run.neurons.top_rate).neurons
        neuron_rows.append((run.name, *(str(len(selected.get(e, []))) for e in EMOTIONS)))
    blocks = [
        Heading("Runs compared", 1),
        Paragraph("Runs: " + ", ".join(f"`{n}`" for n in names) + "."),
        Table(("run", "model", "test dialogues", "method/shots", "top rate (%)",
               "unmodified accuracy (%)", *(f"{e} own-mask change (pp)" for e in EMOTIONS)),
              tuple(rows), "Unmodified accuracy and each emotion's change with its own neurons "
              "masked (all layers)", (False, False, True, False, True, True) + (True,) * 6),
        Table(("run", *EMOTIONS), tuple(neuron_rows), "Emotion neurons per emotion",
              (False,) + (True,) * 6),
        *(Image(name, f"{name} compared") for name in
          ("figure1", "figure2", "figure3", "figure4", "figure14", "figure15")),
    ]
    return render_markdown(blocks)


def write_comparison(runs: Sequence[RunAtRev], out: str | Path) -> Path:
    """figures/<name>.png|svg and compare.md under `out`, replaced whole."""
    if len(runs) < 2:
        raise CompareError(f"compare needs at least two runs, got {len(runs)}")
    if len({run.name for run in runs}) != len(runs):
        raise CompareError("compare: the same revision is named twice")
    out = Path(out)
    with atomic_dir(out) as tmp:
        try:
            for name, figure in compare_figures(runs).items():
                save_figure(figure, tmp / "figures", name)
            (tmp / "compare.md").write_text(compare_markdown(runs))
        except (KeyError, ReportDataError, DataError) as error:  # DataError: no selection at a ratio
            raise CompareError(f"compare: a run's metrics lack {error}") from None
    return out
