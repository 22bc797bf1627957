"""A value of exactly 0 is drawn as visibly as any other (a bar of height 0 draws nothing, so the
figure would read as if the value were missing), and lines that coincide do not hide each
other's markers: checked on the rendered pixels and on where the markers land."""

from __future__ import annotations

import copy

import pytest

from emoneurons.emotions import EMOTIONS
from emoneurons.io.eval_file import parse_eval
from emoneurons.report.figures.figure2 import figure2_effect, figure2_masking
from emoneurons.report.figures.figure3 import figure3_effect, figure3_ratio_sweep
from emoneurons.report.figures.figure4 import figure4_layer_sweep
from emoneurons.report.results.accuracy import rq2_view
from emoneurons.report.results.effects import effect_rows
from emoneurons.report.results.sweeps import accuracy_changes, layer_sweep, layer_sweep_ratio, ratio_sweep
from emoneurons.report.style import CONTROL_COLOR, EMOTION_COLORS
from helpers.figure_layout import colour_share, marker_clashes, rendered_pixels
from helpers.synthetic_run import synthetic_run

VISIBLE = 0.3  # of the strip where the bar sits: a drawn bar covers about half of it (2 of 5 rows and more)


@pytest.fixture(scope="module")
def evaluation():
    return parse_eval(synthetic_run()["eval"])


def test_figure2_draws_a_zero_accuracy_and_a_zero_control(evaluation):
    """The anger panel with anger's own neurons at 0% and its control at 0%: both bars show at 0,
    where the other emotions' bars (none of them 0) show as bars."""
    view = copy.deepcopy(rq2_view(evaluation, 0.01))
    view["masked"]["anger"]["accuracy"]["anger"] = 0.0
    view["masked"]["anger"]["ci95"]["anger"] = [0.0, 0.4]
    view["control"]["anger"]["anger"] = 0.0
    figure = figure2_masking(view)
    pixels = rendered_pixels(figure)
    ax, width = figure.axes[0], 0.4  # the anger panel; figure2's bar width
    own = colour_share(pixels, ax, 1 - width * 0.9, 1 - width * 0.1, 0.0, EMOTION_COLORS["anger"])
    control = colour_share(pixels, ax, 1 + width * 0.1, 1 + width * 0.9, 0.0, CONTROL_COLOR)
    disgust = colour_share(pixels, ax, 2 - width * 0.9, 2 - width * 0.1, 10.0, EMOTION_COLORS["disgust"])
    assert min(own, control, disgust) > VISIBLE, (own, control, disgust)


def test_figure2_effect_draws_a_zero_effect_and_a_zero_control(evaluation):
    rows = copy.deepcopy([r for r in effect_rows(evaluation) if r["layers"] == "all" and r["ratio"] == 0.01])
    rows[0]["effect"] = 0.0  # anger's own neurons
    rows[1]["control"] = 0.0  # disgust's random neurons
    figure = figure2_effect(rows, "delta_masked")
    pixels, ax, width = rendered_pixels(figure), figure.axes[0], 0.38
    assert colour_share(pixels, ax, -width * 0.9, -width * 0.1, 0.0, EMOTION_COLORS["anger"]) > VISIBLE
    assert colour_share(pixels, ax, 1 + width * 0.1, 1 + width * 0.9, 0.0, CONTROL_COLOR) > VISIBLE


def test_figure4_draws_a_zero_change_beside_its_control(evaluation):
    """anger's own neurons change its accuracy by exactly 0 in every layer range: each of its bars
    shows at 0, so its control diamond has a bar to be compared with."""
    changes = accuracy_changes(evaluation)
    rows = copy.deepcopy(layer_sweep(changes, layer_sweep_ratio(changes, 0.01)))
    for row in rows:
        if row["masked"] == row["emotion"] == "anger" and row["condition"] == "mask":
            row["accuracy_change"] = 0.0
    figure = figure4_layer_sweep(rows)
    pixels, ax = rendered_pixels(figure), figure.axes[0]
    width = 0.8 / len(EMOTIONS)
    offset = -(len(EMOTIONS) - 1) / 2 * width  # anger: the first bar of each group
    groups = len(ax.get_xticks())
    assert groups == 4
    shares = [colour_share(pixels, ax, g + offset - width * 0.4, g + offset + width * 0.4, 0.0, EMOTION_COLORS["anger"])
              for g in range(groups)]
    assert min(shares) > VISIBLE, shares


def test_figure3_lines_that_coincide_keep_their_markers_apart(evaluation):
    """Every evaluated emotion's change and the control at exactly 0 for every ratio in the anger
    panel: all seven lines coincide, and each marker still shows."""
    rows = copy.deepcopy(ratio_sweep(accuracy_changes(evaluation)))
    for row in rows:
        if row["masked"] == "anger":
            row["accuracy_change"] = 0.0
    figure = figure3_ratio_sweep(rows)
    rendered_pixels(figure)  # the layout, so the display positions are final
    assert marker_clashes(figure.axes[0]) == []
    assert len([line for line in figure.axes[0].get_lines() if str(line.get_marker()) != "None"]) == 7


def test_figure3_effect_keeps_an_effect_and_its_control_apart(evaluation):
    rows = copy.deepcopy([r for r in effect_rows(evaluation) if r["layers"] == "all"])
    for row in rows:
        row["control"] = row["effect"]
    figure = figure3_effect(rows, "delta_masked")
    rendered_pixels(figure)
    for ax in figure.axes[:len(EMOTIONS)]:
        assert marker_clashes(ax, skip_gids=("specific",)) == []  # a star marks its own effect's point
