"""Figures of the plot stage: the pure tensor functions on hand-built inputs, the metric views, and
every figure rendered from synthetic metrics shaped as docs/CONTRACTS.md says.

The synthetic run they are drawn from is tests/helpers/synthetic_run.py's."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.io.eval_file import parse_eval
from emoneurons.io.neurons_file import NoSelectionError, parse_neurons
from emoneurons.io.records import RecordError
from emoneurons.report.errors import ReportDataError
from emoneurons.report.figures.paper_figures import FIGURE_NAMES, build_figures
from emoneurons.report.figures.plots_data import plots_data, write_plots_data
from emoneurons.report.results.accuracy import rq2_view
from emoneurons.report.results.confusions import failure_counts, failure_distribution, masked_confusions
from emoneurons.report.results.effects import effect_rows
from emoneurons.report.results.neuron_sets import neuron_membership, overlap_ratio
from emoneurons.report.results.sweeps import accuracy_changes, layer_sweep, layer_sweep_ratio, ratio_sweep
from emoneurons.report.style import DPI, EMOTION_COLORS, save_figure
from helpers.synthetic_run import png_size, synthetic_run

RATIOS = (0.01, 0.02, 0.03, 0.04, 0.05)
RANGES = ("bottom", "middle", "top", "all")


# ------------------------------------------------------------------------------------------
# The synthetic run (one builder for every report test)


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return synthetic_run()


# ------------------------------------------------------------------------------------------
# Pure functions on hand-built inputs


def test_overlap_ratio_hand_built_sets():
    sets = torch.zeros(4, 10, dtype=torch.bool)
    sets[0, [0, 1, 2, 3]] = True  # A
    sets[1, [2, 3, 4]] = True  # B: A∩B = {2,3}, A∪B = {0..4}
    sets[2, [9]] = True  # C: disjoint from A and B
    # sets[3] empty
    ratio = overlap_ratio(sets)
    assert ratio.shape == (4, 4)
    assert ratio[0, 1].item() == pytest.approx(2 / 5)
    assert ratio[1, 0].item() == pytest.approx(2 / 5)
    assert ratio[0, 2].item() == 0.0
    assert ratio[0, 0].item() == 1.0 and ratio[2, 2].item() == 1.0
    assert ratio[3, 3].item() == 0.0 and ratio[3, 0].item() == 0.0  # empty sets share nothing
    assert torch.equal(ratio, ratio.T)


def test_overlap_ratio_accepts_layer_shaped_membership():
    sets = torch.zeros(2, 3, 4, dtype=torch.bool)
    sets[0, 0, 0] = sets[0, 1, 1] = sets[0, 2, 2] = True
    sets[1, 2, 2] = sets[1, 2, 3] = True
    assert overlap_ratio(sets)[0, 1].item() == pytest.approx(1 / 4)


def test_neuron_membership_from_lists_and_rejects_out_of_range():
    membership = neuron_membership({"anger": [[0, 1], [2, 3]], "fear": [[2, 3]]}, 3, 4)
    assert membership.shape == (6, 12)
    assert membership[0].nonzero().flatten().tolist() == [1, 11]
    assert membership[2].nonzero().flatten().tolist() == [11]
    assert not membership[1].any()
    assert overlap_ratio(membership)[0, 2].item() == pytest.approx(1 / 2)
    with pytest.raises(ReportDataError, match="anger"):
        neuron_membership({"anger": [[3, 0]]}, 3, 4)


def test_failure_distribution_hand_built():
    confusions = torch.zeros(6, 6, 6, dtype=torch.long)
    confusions[0, 0] = torch.tensor([3, 2, 0, 0, 1, 1])  # anger masked: 4 failures
    confusions[0, 1] = torch.tensor([5, 5, 5, 5, 5, 5])  # other rows of that matrix: ignored
    confusions[1, 1] = torch.tensor([6, 0, 0, 0, 0, 0])  # disgust masked: all to anger
    confusions[3, 3] = torch.tensor([0, 0, 0, 4, 0, 0])  # happiness masked: no failures
    confusions[5, 5] = torch.tensor([0, 0, 0, 3, 0, 1])  # surprise masked: 3 of 4 to happiness
    distribution = failure_distribution(confusions)
    assert distribution.shape == (6, 6)
    assert distribution[0].tolist() == pytest.approx([0, 0.5, 0, 0, 0.25, 0.25])
    assert distribution[1].tolist() == pytest.approx([1, 0, 0, 0, 0, 0])
    assert distribution[5].tolist() == pytest.approx([0, 0, 0, 1, 0, 0])
    assert torch.isnan(distribution[3]).all()  # no failures: marked, not zero
    assert torch.isnan(distribution[2]).all()
    for row in (0, 1, 5):
        assert distribution[row].sum().item() == pytest.approx(1.0)
        assert distribution[row, row].item() == 0.0
    assert failure_counts(confusions).tolist() == [4, 6, 0, 0, 0, 3]


# ------------------------------------------------------------------------------------------
# Views of the metrics


def test_rq2_view_matches_conditions(run):
    view = rq2_view(parse_eval(run["eval"]), 0.01)
    base = run["eval"]["conditions"][0]
    assert view["unmodified"]["accuracy"]["anger"] == base["accuracy"]["anger"]
    masked = next(c for c in run["eval"]["conditions"] if c["id"] == "mask-fear-r0.01-all")
    assert view["masked"]["fear"]["accuracy"]["sadness"] == masked["accuracy"]["sadness"]
    draws = [c for c in run["eval"]["conditions"] if c["id"].startswith("control-fear-r0.01-all-")]
    assert len(draws) == 2 and view["control_draws"]["fear"] == 2
    expected = sum(d["accuracy"]["fear"] for d in draws) / 2
    assert view["control"]["fear"]["fear"] == pytest.approx(expected)


def test_the_accuracy_views_take_the_verdicts_null_kind():
    # The default run draws matched controls only: Figure 2's bars and the sweeps' control rows are
    # theirs. Beside uniform ones (the atlas) they stay the verdict's null's, not the uniform draws'.
    record = synthetic_run(seed=1, nulls=True)
    assert record["eval"]["effects"]["null"] == "matched"
    for only_matched in (False, True):
        if only_matched:
            record["eval"]["conditions"] = [c for c in record["eval"]["conditions"] if c["kind"] != "control"]
        evaluation = parse_eval(record["eval"])
        draws = [c for c in record["eval"]["conditions"]
                 if c["kind"] == "matched" and c["id"].startswith("matched-fear-r0.01-all-d")]
        assert len(draws) == 2
        view = rq2_view(evaluation, 0.01)
        assert view["control_draws"]["fear"] == 2
        assert view["control"]["fear"]["fear"] == pytest.approx(sum(d["accuracy"]["fear"] for d in draws) / 2)
        row = next(r for r in accuracy_changes(evaluation) if r["condition"] == "control" and r["masked"] == "fear"
                   and r["emotion"] == "fear" and r["ratio"] == 0.01 and r["layers"] == "all")
        assert row["accuracy"] == pytest.approx(view["control"]["fear"]["fear"])


def test_accuracy_changes_in_percentage_points(run):
    changes = accuracy_changes(parse_eval(run["eval"]))
    base = run["eval"]["conditions"][0]["accuracy"]
    masked = next(c for c in run["eval"]["conditions"] if c["id"] == "mask-surprise-r0.03-all")
    row = next(r for r in changes if r["masked"] == "surprise" and r["emotion"] == "surprise"
               and r["ratio"] == 0.03 and r["layers"] == "all" and r["condition"] == "mask")
    assert row["accuracy_change"] == pytest.approx(100 * (masked["accuracy"]["surprise"]
                                                          - base["surprise"]))
    assert row["accuracy_change"] < 0  # the builder drops the target's correct answers
    assert {r["ratio"] for r in ratio_sweep(changes)} == set(RATIOS)
    sweep = layer_sweep(changes, layer_sweep_ratio(changes, 0.01))
    assert {r["layers"] for r in sweep} == set(RANGES)
    # one mask and one (averaged) control row per masked emotion, range and evaluated emotion
    assert len(sweep) == 6 * 4 * 6 * 2


def test_masked_confusions_marks_missing_conditions(run):
    ev = dict(run["eval"])
    ev["conditions"] = [c for c in ev["conditions"] if c.get("masked") != "fear"]
    confusions, evaluated = masked_confusions(parse_eval(ev), 0.01)
    assert evaluated == [True, True, False, True, True, True]
    assert confusions[2].sum().item() == 0
    anger = next(c for c in ev["conditions"] if c["id"] == "mask-anger-r0.01-all")
    assert confusions[0].tolist() == anger["confusion"]


def test_plots_data_rows(run, tmp_path):
    files = plots_data(parse_neurons(run["neurons"]), parse_eval(run["eval"]))
    per_layer = run["neurons"]["ratios"]["0.01"]["per_layer"]
    long = files["per_layer.csv"]
    assert len(long) == 8 * 6
    assert next(r["neurons"] for r in long if r["layer"] == 3 and r["emotion"] == "sadness") \
        == per_layer["sadness"][3]
    assert [r["anger"] for r in files["per_layer_wide.csv"]] == per_layer["anger"]
    unmodified = run["eval"]["conditions"][0]["confusion"]
    rows = files["confusion/unmodified.json"]
    assert len(rows) == sum(map(sum, unmodified))
    assert sum(1 for r in rows if r == {"actual": "fear", "predicted": "fear"}) == unmodified[2][2]
    assert {f"confusion/mask-{e}.json" for e in EMOTIONS} <= set(files)
    target = files["ratio_sweep_target.csv"]
    assert [r["ratio_percent"] for r in target] == [1, 2, 3, 4, 5]
    write_plots_data(tmp_path, files)
    header = (tmp_path / "layer_sweep_target.csv").read_text().splitlines()[0]
    assert header == "label,masked,layers,accuracy_change,control_change"
    assert json.loads((tmp_path / "confusion/mask-anger.json").read_text())[0].keys() == {
        "actual", "predicted"}


# ------------------------------------------------------------------------------------------
# Rendering


def _check_saved(directory: Path, name: str, figure) -> None:
    width, height = figure.get_size_inches()
    assert png_size(directory / f"{name}.png") == (round(width * DPI), round(height * DPI))
    root = ET.parse(directory / f"{name}.svg").getroot()
    assert root.tag.endswith("svg")


@pytest.fixture(scope="module")
def rendered(run, tmp_path_factory) -> tuple[dict, Path]:
    """Every figure of the synthetic run, built and saved once for the module."""
    directory = tmp_path_factory.mktemp("figures")
    figures = build_figures(run["filter"], parse_neurons(run["neurons"]), parse_eval(run["eval"]), "synthetic/tiny-llama")
    for name, figure in figures.items():
        save_figure(figure, directory, name)
    return figures, directory


def test_every_figure_renders_png_and_svg(rendered):
    figures, directory = rendered
    assert tuple(figures) == FIGURE_NAMES
    for name, figure in figures.items():
        assert (directory / f"{name}.png").stat().st_size > 10_000
        assert (directory / f"{name}.svg").stat().st_size > 10_000
        _check_saved(directory, name, figure)
        assert figure._suptitle is not None or any(ax.get_title() for ax in figure.axes)
        assert figure.legends or any(ax.get_legend() for ax in figure.axes) or name in (
            "figure14", "figure15") or (  # heatmaps carry a colour bar instead
            name in ("draw_null", "dose_response") and "in this run" in figure.axes[0].texts[0].get_text())  # not run
    assert not list(directory.glob(".*"))  # the atomic saver leaves no temporaries


def test_figures_use_one_colour_per_emotion(rendered):
    figures, _ = rendered
    lines = {line.get_label(): line.get_color() for line in figures["figure1"].axes[0].get_lines()}
    for emotion in EMOTIONS:
        label = next(k for k in lines if k.startswith(emotion + " "))
        assert lines[label].lower() == EMOTION_COLORS[emotion].lower()
    legend = figures["figure4"].legends[0]
    assert [t.get_text() for t in legend.get_texts()][:6] == list(EMOTIONS)
    # Figure 3: the masked emotion's own line is the thick one, in its colour
    anger_panel = figures["figure3"].axes[0]
    thick = max(anger_panel.get_lines(), key=lambda line: line.get_linewidth())
    assert thick.get_color().lower() == EMOTION_COLORS["anger"].lower()


def test_figures_without_controls_or_layer_ranges(tmp_path):
    sparse = synthetic_run(seed=3, control_draws=0, ranges=("all",), ratios=(0.01, 0.02))
    figures = build_figures(sparse["filter"], parse_neurons(sparse["neurons"]), parse_eval(sparse["eval"]))
    for name in ("figure2", "figure3", "figure4"):  # the ones that draw controls / ranges
        figures[name].savefig(tmp_path / f"{name}.png", dpi=DPI)
        width, height = figures[name].get_size_inches()
        assert png_size(tmp_path / f"{name}.png") == (round(width * DPI), round(height * DPI))


def test_views_name_the_missing_key(run):
    with pytest.raises(NoSelectionError, match="no selection at ratio 0.07 "):
        build_figures(run["filter"], parse_neurons({**run["neurons"], "top_rate": 0.07}), parse_eval(run["eval"]))
    with pytest.raises(RecordError, match=r"^reports/metrics/eval.json: conditions: no condition of kind 'unmodified'$"):
        parse_eval({"conditions": run["eval"]["conditions"][1:]})


def test_synthetic_run_is_self_consistent(run):
    for condition in run["eval"]["conditions"]:
        matrix = condition["confusion"]
        for i, e in enumerate(EMOTIONS):
            assert sum(matrix[i]) == 6
            assert math.isclose(condition["accuracy"][e], matrix[i][i] / 6)


def test_effect_rows_follow_eval_json(run):
    rows = effect_rows(parse_eval(run["eval"]))
    masks = [c for c in run["eval"]["conditions"] if c["kind"] == "mask"]
    assert len(rows) == len(masks)
    for row, c in zip(rows, masks):
        assert row["effect"] == c["effect"]["delta_masked"]["mean"] and row["verdict"] == c["vs_control"]["verdict"]
        assert row["control"] == pytest.approx(c["vs_control"]["control_mean"])
    assert effect_rows(parse_eval({"conditions": run["eval"]["conditions"]})) == []  # eval.json from before the effects


def test_figure2_effect_plots_the_effects_controls_and_markers(rendered, run):
    figures, _ = rendered
    ax = figures["figure2_effect"].axes[0]
    rows = {r["masked"]: r for r in effect_rows(parse_eval(run["eval"])) if r["layers"] == "all" and r["ratio"] == 0.01}
    bars = [p for p in ax.patches if p.get_width() > 0]
    own = [b for b in bars if not b.get_hatch()]
    control = [b for b in bars if b.get_hatch()]
    assert [round(b.get_height(), 6) for b in own] == [rows[e]["effect"] for e in EMOTIONS]
    assert [b.get_height() for b in control] == pytest.approx([rows[e]["control"] for e in EMOTIONS])
    assert all(c.get_x() > o.get_x() for o, c in zip(own, control))  # the control beside its mask
    # Error bars: the paired bootstrap CI of each mask's effect.
    caps = {round(float(y), 6) for line in ax.get_lines() for y in line.get_ydata() if line.get_marker() == "_"}
    for e in EMOTIONS:
        assert {round(rows[e]["effect_ci"][0], 6), round(rows[e]["effect_ci"][1], 6)} <= caps
    stars = {line.get_gid() for line in ax.get_lines() if line.get_marker() == "*"}
    assert stars == {f"specific-{e}" for e in EMOTIONS if rows[e]["verdict"] == "specific"} and stars


def test_figure3_effect_plots_every_ratio_per_masked_emotion(rendered, run):
    figures, _ = rendered
    rows = [r for r in effect_rows(parse_eval(run["eval"])) if r["layers"] == "all"]
    for ax, masked in zip(figures["figure3_effect"].axes, EMOTIONS):
        mine = sorted((r for r in rows if r["masked"] == masked), key=lambda r: r["ratio"])
        lines = {line.get_gid(): line for line in ax.get_lines() if line.get_gid() and line.get_marker() != "_"}  # not the caps
        assert list(lines["control"].get_ydata()) == pytest.approx([r["control"] for r in mine])
        assert list(lines["effect"].get_ydata()) == pytest.approx([r["effect"] for r in mine])
        # At its ratio, drawn beside the effect (test_values_visible.py): the control right of it, both within 0.25 pp.
        own_x, control_x = lines["effect"].get_xdata(), lines["control"].get_xdata()
        assert all(abs(x - 100 * r["ratio"]) < 0.25 for xs in (own_x, control_x) for x, r in zip(xs, mine))
        assert all(c > o for o, c in zip(own_x, control_x))
        caps = sorted(float(y) for line in ax.get_lines() if line.get_marker() == "_" for y in line.get_ydata())
        assert caps == pytest.approx(sorted([r["effect_ci"][0] for r in mine] + [r["effect_ci"][1] for r in mine]))
        specific = [x for x, r in zip(own_x, mine) if r["verdict"] == "specific"]  # on the effect's own point
        assert list(lines["specific"].get_xdata()) == pytest.approx(specific) if specific else "specific" not in lines


def test_the_nulls_figures_draw_eval_jsons_draws_and_doses():
    nulls = synthetic_run(seed=1, nulls=True)
    evaluation = parse_eval(nulls["eval"])
    figures = build_figures(nulls["filter"], parse_neurons(nulls["neurons"]), evaluation)
    record = nulls["eval"]["draw_null"]["conditions"]
    ax = figures["draw_null"].axes[0]
    lines = {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}
    for emotion in EMOTIONS:
        entry = record[f"mask-{emotion}-r0.01-all"]
        assert list(lines[f"draws-{emotion}"].get_ydata()) == pytest.approx(entry["draws"])
        # the rank verdict is "not enough draws" here: a hollow star where the normal prediction says specific
        assert (f"specific-normal-{emotion}" in lines) == (entry["verdict_normal"] == "specific")
        assert f"specific-{emotion}" not in lines
    doses = nulls["eval"]["dose_response"]["emotions"]
    for ax, emotion in zip(figures["dose_response"].axes, EMOTIONS):
        lines = {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}
        assert list(lines[f"mask-{emotion}"].get_xdata()) == [0.0, 0.5, 1.0]
        assert list(lines[f"mask-{emotion}"].get_ydata()) == pytest.approx([*doses[emotion]["mask"], 0.0])
        assert list(lines[f"control-{emotion}"].get_ydata()) == pytest.approx([*doses[emotion]["control"], 0.0])
    # Figure 2's effect panel: stars against the matched null, hollow where only the uniform test passes.
    ax = figures["figure2_effect"].axes[0]
    stars = {line.get_gid() for line in ax.get_lines() if line.get_marker() == "*"}
    masks = {c["masked"]: c for c in nulls["eval"]["conditions"] if c["id"] == f"mask-{c['masked']}-r0.01-all"}
    for emotion, mask in masks.items():
        assert (f"specific-{emotion}" in stars) == (mask["vs_matched"]["verdict"] == "specific")
        assert (f"specific-other-{emotion}" in stars) == (mask["vs_matched"]["verdict"] != "specific"
                                                           and mask["vs_control"]["verdict"] == "specific")
    # Graded masks stay out of the accuracy sweeps (they would be averaged into the plain mask's).
    plain_masks = {c.masked: c for c in evaluation.find("mask", ratio=0.01, layers="all")}
    for row in accuracy_changes(evaluation):
        if row["condition"] == "mask" and row["layers"] == "all" and row["ratio"] == 0.01:
            assert row["accuracy"] == plain_masks[row["masked"]].accuracy[row["emotion"]]
    # Runs without them: one placeholder figure each.
    plain = build_figures(nulls["filter"], parse_neurons(nulls["neurons"]), parse_eval(synthetic_run(seed=1)["eval"]))
    assert "eval.null_draws: 0" in plain["draw_null"].axes[0].texts[0].get_text()
    assert "eval.scales: []" in plain["dose_response"].axes[0].texts[0].get_text()
