"""`emoneurons compare`'s figures: the paper's figures with two or more runs (git revisions or DVC
experiments) overlaid, one line style / bar hatch per run. Plain data in, Figure out; the runs are
read at their revisions by runtime/revisions.py."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from emoneurons.emotions import EMOTIONS
from emoneurons.io.eval_file import EvalFile
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.report.figures.drawing import (
    draw_bar,
    draw_heatmap,
    format_target_panel,
    label_panel_grid,
    new_figure,
    panel_axes,
)
from emoneurons.report.results.accuracy import as_percent, rq2_view
from emoneurons.report.results.confusions import failure_distribution, masked_confusions
from emoneurons.report.results.neuron_sets import OVERLAP_DEFINITION, overlap_of, per_layer_counts
from emoneurons.report.results.sweeps import (
    accuracy_changes,
    layer_sweep,
    layer_sweep_ratio,
    ratio_sweep,
    rows_matching,
)
from emoneurons.report.style import (
    CONTROL_COLOR,
    EMOTION_COLORS,
    LAYER_RANGE_LABELS,
    LAYER_RANGES,
    PANEL_GRID,
    UNMODIFIED_COLOR,
    run_hatch,
    run_style,
)


@dataclass(frozen=True)
class RunAtRev:
    """One run's records as compare reads them at a revision."""

    name: str
    eval: EvalFile
    neurons: NeuronsFile


def _run_handles(names: Sequence[str], color: str = "black") -> list[Line2D]:
    return [Line2D([], [], color=color, label=name, **run_style(i)) for i, name in enumerate(names)]


def compare_figure1(per_layer: Mapping[str, Mapping[str, Sequence[int]]]) -> Figure:
    """Figure 1 per run: one panel per emotion, one line per run. Runs with different depths are
    drawn against relative depth."""
    names = list(per_layer)
    depths = {len(next(iter(v.values()))) for v in per_layer.values()}
    relative = len(depths) > 1
    figure = new_figure(15, 8.5)
    axes = panel_axes(figure)
    for ax, emotion in zip(axes, EMOTIONS):
        for i, name in enumerate(names):
            counts = list(per_layer[name].get(emotion, []))
            span = max(len(counts) - 1, 1)
            x = [k / span for k in range(len(counts))] if relative else list(range(len(counts)))
            ax.plot(x, counts, color=EMOTION_COLORS[emotion], linewidth=1.6, markersize=4,
                    **run_style(i))
        ax.set_title(emotion, color=EMOTION_COLORS[emotion], fontweight="bold")
        ax.grid(alpha=0.3)
    for ax in axes[:: PANEL_GRID[1]]:
        ax.set_ylabel("emotion neurons in the layer (count)")
    for ax in axes[-PANEL_GRID[1]:]:
        ax.set_xlabel("relative depth (layer / last layer)" if relative else "layer (0 = first)")
    figure.legend(handles=_run_handles(names), title="run", loc="outside lower center",
                  ncols=min(len(names), 6))
    figure.suptitle("Figure 1 compared: emotion neurons per layer")
    return figure


def compare_figure2(views: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Figure 2 per run: per target emotion, bars per run for unmodified and each emotion's
    neurons masked (95% CI), the run's random-neuron control as a grey diamond on its bar."""
    names = list(views)
    figure = new_figure(16, 9)
    axes = panel_axes(figure)
    width = 0.8 / len(names)
    for ax, target in zip(axes, EMOTIONS):
        for i, name in enumerate(names):
            view = views[name]
            offset = (i - (len(names) - 1) / 2) * width
            groups = [("unmodified", view["unmodified"], UNMODIFIED_COLOR)] + [
                (e, view["masked"][e], EMOTION_COLORS[e]) for e in EMOTIONS if e in view["masked"]]
            for label, condition, color in groups:
                slot = 0 if label == "unmodified" else 1 + EMOTIONS.index(label)
                value = as_percent(condition["accuracy"][target])
                low, high = (as_percent(v) for v in condition["ci95"][target])
                err = None if any(math.isnan(v) for v in (value, low, high)) else [
                    [max(value - low, 0)], [max(high - value, 0)]]
                draw_bar(ax, slot + offset, value, width, color=color, hatch=run_hatch(i),
                         edgecolor="white", yerr=err, capsize=1.5, ecolor="black",
                         error_kw={"linewidth": 0.8})
                if label in view["control"]:
                    ax.plot(slot + offset, as_percent(view["control"][label][target]), marker="D",
                            markersize=4, color=CONTROL_COLOR, markeredgecolor="black", zorder=3)
        format_target_panel(ax, target)
    label_panel_grid(axes)
    handles = [Patch(facecolor="#BBBBBB", hatch=run_hatch(i), edgecolor="white", label=name)
               for i, name in enumerate(names)]
    handles.append(Line2D([], [], marker="D", color=CONTROL_COLOR, markeredgecolor="black",
                          linestyle="none", label="random-neuron control"))
    figure.legend(handles=handles, title="run (bar hatch)", loc="outside lower center",
                  ncols=min(len(handles), 6))
    figure.suptitle("Figure 2 compared: accuracy per target emotion, unmodified vs masked "
                    "(error bars: 95% CI)")
    return figure


def _sweep_panels(
    rows: Mapping[str, Sequence[Mapping[str, Any]]], key: str, title: str, xlabel: str,
) -> Figure:
    names = list(rows)
    figure = new_figure(15, 8.5)
    axes = panel_axes(figure)
    for ax, masked in zip(axes, EMOTIONS):
        for i, name in enumerate(names):
            for condition, color, alpha, lw in (("mask", EMOTION_COLORS[masked], 1.0, 2.2),
                                                ("control", CONTROL_COLOR, 0.9, 1.2)):
                line = rows_matching(rows[name], masked=masked, emotion=masked, condition=condition)
                if key == "ratio":
                    line = sorted(line, key=lambda r: r["ratio"])
                    x = [as_percent(r["ratio"]) for r in line]
                else:
                    line = sorted(line, key=lambda r: LAYER_RANGES.index(r["layers"]))
                    x = [LAYER_RANGES.index(r["layers"]) for r in line]
                ax.plot(x, [r["accuracy_change"] for r in line], color=color, alpha=alpha,
                        linewidth=lw, markersize=5, **run_style(i))
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(f"{masked} neurons masked", color=EMOTION_COLORS[masked], fontweight="bold")
        ax.grid(alpha=0.3)
        if key == "layers":
            ax.set_xticks(range(len(LAYER_RANGES)), [LAYER_RANGE_LABELS[r] for r in LAYER_RANGES],
                          fontsize=8)
    for ax in axes[:: PANEL_GRID[1]]:
        ax.set_ylabel("accuracy change of the masked emotion (pp)")
    for ax in axes[-PANEL_GRID[1]:]:
        ax.set_xlabel(xlabel)
    handles = _run_handles(names)
    handles.append(Line2D([], [], color=CONTROL_COLOR, linewidth=1.2,
                          label="grey: random-neuron control"))
    figure.legend(handles=handles, title="run (line style)", loc="outside lower center",
                  ncols=min(len(handles), 7))
    figure.suptitle(title)
    return figure


def compare_figure3(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Figure 3 per run: the masked emotion's accuracy change over masking ratios."""
    return _sweep_panels(rows, "ratio", "Figure 3 compared: accuracy change of the masked emotion "
                         "over masking ratios (all layers)", "masking ratio (% of all FFN neurons)")


def compare_figure4(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Figure 4 per run: the masked emotion's accuracy change per layer range."""
    return _sweep_panels(rows, "layers", "Figure 4 compared: accuracy change of the masked "
                         "emotion by layer range", "layers whose emotion neurons are masked")


def compare_heatmaps(matrices: Mapping[str, torch.Tensor], kind: str) -> Figure:
    """Figure 14 (kind "overlap") or 15 (kind "failures") for each run, side by side."""
    names = list(matrices)
    figure = new_figure(5.2 * len(names) + 1.2, 5.6)
    axes = figure.subplots(1, len(names), squeeze=False)[0]
    for k, (ax, name) in enumerate(zip(axes, names)):
        matrix = matrices[name]
        if kind == "overlap":
            draw_heatmap(ax, matrix, "Blues", "overlap ratio |A∩B| / |A∪B|", figure,
                         colorbar=k == len(names) - 1)
        else:
            empty = [bool(torch.isnan(matrix[i]).all()) for i in range(len(EMOTIONS))]
            draw_heatmap(ax, matrix, "Reds", "share of the masked emotion's failures", figure,
                         hidden=torch.eye(len(EMOTIONS), dtype=torch.bool), empty_rows=empty,
                         colorbar=k == len(names) - 1)
        ax.set_title(name)
        ax.set_xlabel("comparison emotion (B)" if kind == "overlap" else "wrongly predicted emotion")
        if k == 0:
            ax.set_ylabel("reference emotion (A)" if kind == "overlap" else "masked emotion")
    figure.suptitle("Figure 14 compared: overlap ratio " + OVERLAP_DEFINITION if kind == "overlap"
                    else "Figure 15 compared: misclassifications after masking, within failures")
    return figure


def compare_figures(runs: Sequence[RunAtRev]) -> dict[str, Figure]:
    """Every compared figure, by the name of the paper figure it overlays."""
    views, per_layer, ratio_rows, layer_rows, overlaps, failures = {}, {}, {}, {}, {}, {}
    for run in runs:
        top_rate = run.neurons.top_rate
        changes = accuracy_changes(run.eval)
        views[run.name] = rq2_view(run.eval, top_rate)
        per_layer[run.name] = per_layer_counts(run.neurons, top_rate)
        ratio_rows[run.name] = ratio_sweep(changes)
        layer_rows[run.name] = layer_sweep(changes, layer_sweep_ratio(changes, top_rate))
        overlaps[run.name] = overlap_of(run.neurons, top_rate)
        failures[run.name] = failure_distribution(masked_confusions(run.eval, top_rate)[0])
    return {
        "figure1": compare_figure1(per_layer), "figure2": compare_figure2(views),
        "figure3": compare_figure3(ratio_rows), "figure4": compare_figure4(layer_rows),
        "figure14": compare_heatmaps(overlaps, "overlap"),
        "figure15": compare_heatmaps(failures, "failures"),
    }
