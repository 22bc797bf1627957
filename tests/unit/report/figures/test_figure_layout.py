"""Every figure as drawn: no text box (titles, axis labels, tick labels, legend entries, notes)
overlaps another, and none leaves the canvas. Extents come from matplotlib's own renderer
(`fig.canvas.draw()`, then `get_window_extent`), so this is what the saved PNG shows, at the
default run's model name (the longest subtitle the plot stage writes)."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from emoneurons.io.eval_file import parse_eval
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.io.steer_file import parse_steer
from emoneurons.report.figures.paper_figures import FIGURE_NAMES, build_figures
from emoneurons.report.steering.figure import steering_figure
from helpers.figure_layout import MODEL, layout_faults, steer_json
from helpers.synthetic_run import synthetic_run


def test_the_check_sees_overlapping_and_cut_text():
    figure = Figure(figsize=(4, 3), layout="constrained")
    ax = figure.subplots()
    ax.set_xlabel("a label far too long for a figure four inches wide, so it runs past both edges")
    ax.text(0.5, 0.5, "here", transform=ax.transAxes)
    ax.text(0.5, 0.5, "and here", transform=ax.transAxes)
    faults = layout_faults(figure)
    assert any("leaves the canvas" in f and "far too long" in f for f in faults)
    assert any("'here' overlaps 'and here'" in f for f in faults)
    # Rotated texts side by side: their axis-aligned boxes overlap, the texts do not.
    figure = Figure(figsize=(4, 3), layout="constrained")
    figure.text(0.3, 0.5, "rotated text", rotation=45)
    figure.text(0.38, 0.5, "rotated text", rotation=45)
    assert layout_faults(figure) == []


@pytest.mark.parametrize("name", FIGURE_NAMES)
def test_paper_figure_text_does_not_overlap_or_leave_the_canvas(name):
    run = synthetic_run()
    figure = build_figures(run["filter"], parse_neurons(run["neurons"]), parse_eval(run["eval"]), MODEL)[name]
    assert layout_faults(figure) == []


@pytest.mark.parametrize("name", ["figure2_effect", "draw_null", "dose_response"])
def test_the_nulls_figures_text_does_not_overlap_or_leave_the_canvas(name):
    run = synthetic_run(nulls=True)
    figure = build_figures(run["filter"], parse_neurons(run["neurons"]), parse_eval(run["eval"]), MODEL)[name]
    assert layout_faults(figure) == []


def test_steering_figure_text_does_not_overlap_or_leave_the_canvas():
    record = steer_json()
    figure = steering_figure(parse_steer(record))
    assert len(figure.axes) == 4  # the coherence row is drawn
    broken = [(c["alpha"], c["share_shift"]) for e in record["emotions"].values() for c in e["steered"] + e["controls"]
              if c["coherence"]["text_broke"]]
    assert len(broken) == 10 and {a for a, _ in broken} == {8}  # the fixture breaks every alpha-8 condition
    rings = [tuple(xy) for collection in figure.axes[0].collections for xy in collection.get_offsets()]
    assert sorted(rings) == sorted((8.0, 100 * y) for _, y in broken)  # each ringed in the share panel
    assert layout_faults(figure) == []
    record.pop("coherence")  # a steer.json from before coherence: the top row only
    assert layout_faults(steering_figure(parse_steer(record))) == []
