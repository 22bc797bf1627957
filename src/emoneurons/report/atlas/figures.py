"""The atlas's figures, from report/atlas/tables.py: models side by side, one line style / bar
hatch per model (as `emoneurons compare` overlays runs), the emotion colours of every figure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from emoneurons.emotions import EMOTIONS
from emoneurons.report.figures.drawing import (
    EFFECT_LABELS,
    HOLLOW_MARKER,
    SPECIFIC_MARKER,
    draw_bar,
    draw_heatmap,
    new_figure,
    panel_axes,
)
from emoneurons.report.style import (
    CHANCE_COLOR,
    CONTROL_COLOR,
    EMOTION_COLORS,
    EMOTION_MARKERS,
    PANEL_GRID,
    UNMODIFIED_COLOR,
    run_hatch,
    run_style,
)

BROKE_MARKER = {"marker": "x", "color": "black", "markersize": 8, "linestyle": "none", "markeredgewidth": 1.6}


def _model_handles(models: Sequence[str]) -> list[Patch]:
    return [Patch(facecolor="#BBBBBB", hatch=run_hatch(i), edgecolor="white", label=m) for i, m in enumerate(models)]


def _color_ticks(ax: Any) -> None:
    for label, emotion in zip(ax.get_xticklabels(), EMOTIONS):
        label.set_color(EMOTION_COLORS[emotion])


def atlas_depth_figure(depth: Mapping[str, Mapping[str, Any]], bins: int) -> Figure:
    """Per emotion, the share of its neurons in each relative-depth bin (layer / layers), one line per model."""
    models = list(depth)
    figure = new_figure(15, 8.5)
    axes = panel_axes(figure)
    centres = [(k + 0.5) / bins for k in range(bins)]
    for ax, emotion in zip(axes, EMOTIONS):
        for i, model in enumerate(models):
            shares = depth[model]["shares"][emotion]
            ax.plot(centres, [100 * s for s in shares], color=EMOTION_COLORS[emotion], linewidth=1.8, markersize=5,
                    **run_style(i))
        ax.set_title(emotion, color=EMOTION_COLORS[emotion], fontweight="bold")
        ax.set_xlim(0, 1)
        ax.set_xticks([k / bins for k in range(bins + 1)])
        ax.grid(alpha=0.3)
    for ax in axes[:: PANEL_GRID[1]]:
        ax.set_ylabel("share of the emotion's neurons (%)")
    for ax in axes[-PANEL_GRID[1]:]:
        ax.set_xlabel("relative depth (layer / layers)")
    handles = [Line2D([], [], color="black", label=f"{m} ({depth[m]['layers']} layers)", **run_style(i))
               for i, m in enumerate(models)]
    figure.legend(handles=handles, title="model (line style)", loc="outside lower center", ncols=min(len(models), 4))
    figure.suptitle(f"Atlas: where each emotion's neurons sit, by relative depth ({bins} bins)")
    return figure


def atlas_effects_figure(baseline: Mapping[str, Mapping[str, Any]], verdicts: Mapping[str, Sequence[Mapping[str, Any]]],
                         effect: str | None) -> Figure:
    """Left: each model's unmodified accuracy (exact 95% CI) beside chance. Right: per emotion,
    the paired effect of its neurons per model (bars, hatch per model), the random control's
    (grey diamond), a star where the corrected test calls the neurons specific."""
    models = list(baseline)
    figure = new_figure(15, 6)
    left, right = figure.subplots(1, 2, width_ratios=(1, 3.2))
    for i, model in enumerate(models):
        row = baseline[model]
        value, (low, high) = 100 * row["accuracy"], (100 * v for v in row["ci95"])
        draw_bar(left, i, value, 0.6, color=UNMODIFIED_COLOR, hatch=run_hatch(i), edgecolor="white",
                 yerr=[[max(value - low, 0)], [max(high - value, 0)]], capsize=4, ecolor="black")
        left.plot([i - 0.4, i + 0.4], [100 * row["chance"]] * 2, color=CHANCE_COLOR, linestyle=":", linewidth=1.5)
    left.set_xticks(range(len(models)), models, rotation=20, ha="right")
    left.set_ylim(0, 105)
    left.set_ylabel("unmodified accuracy (%), 95% CI")
    left.set_title("unmodified model (dotted: chance)")
    left.grid(axis="y", alpha=0.3)
    width = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        offset = (i - (len(models) - 1) / 2) * width
        for slot, row in enumerate(verdicts[model]):
            if math.isnan(row["effect"]):
                continue
            x = slot + offset
            draw_bar(right, x, row["effect"], width, color=EMOTION_COLORS[row["emotion"]], hatch=run_hatch(i), edgecolor="white")
            if not math.isnan(row["control"]):
                right.plot(x, row["control"], marker="D", markersize=5, color=CONTROL_COLOR, markeredgecolor="black",
                           linestyle="none", zorder=3)
            if row["verdict"] == "specific":
                right.plot(x, row["effect"] - 0.04 * _span(verdicts), **SPECIFIC_MARKER)
            elif "specific" in (row.get("verdicts") or {}).values():  # only against another control kind
                right.plot(x, row["effect"] - 0.04 * _span(verdicts), **HOLLOW_MARKER)
    right.axhline(0, color="black", linewidth=0.8)
    right.set_xticks(range(len(EMOTIONS)), EMOTIONS)
    _color_ticks(right)
    right.set_ylabel(f"paired effect: {EFFECT_LABELS.get(effect or '', 'effect')}")
    right.set_xlabel("emotion whose neurons are masked (select.top_rate, all layers)")
    right.set_title("each emotion's neurons masked vs the unmodified model, per test dialogue (mean)")
    right.grid(axis="y", alpha=0.3)
    right.margins(y=0.12)
    nulls = sorted({r.get("null") or "uniform" for rows in verdicts.values() for r in rows})
    _legend_below(figure, models, Line2D([], [], label=f"specific (Holm-corrected test vs {'/'.join(nulls)} control)",
                                         **SPECIFIC_MARKER),
                  Line2D([], [], label="specific only vs the other control kind", **HOLLOW_MARKER))
    figure.suptitle("Atlas: unmodified accuracy beside chance, and the paired effect of each emotion's neurons")
    return figure


def _legend_below(figure: Figure, models: Sequence[str], *markers: Line2D) -> None:
    """The legend under the panels: each model's hatch, the random control's diamond, and `markers`."""
    handles = [*_model_handles(models),
               Line2D([], [], marker="D", color=CONTROL_COLOR, markeredgecolor="black", linestyle="none",
                      label="random-neuron control (the verdict's null)"),
               *markers]
    figure.legend(handles=handles, title="model (bar hatch)", loc="outside lower center", ncols=min(len(handles), 3))


def _span(verdicts: Mapping[str, Sequence[Mapping[str, Any]]]) -> float:
    values = [abs(r["effect"]) for rows in verdicts.values() for r in rows if not math.isnan(r["effect"])]
    return max(values, default=1.0) or 1.0


def atlas_overlap_figure(pairs: Sequence[Mapping[str, Any]]) -> Figure:
    """One heatmap per pair of models: Jaccard of model A's emotion token profile (rows) with model B's (columns)."""
    figure = new_figure(7.2 * max(len(pairs), 1) + 0.8, 6.2)
    axes = figure.subplots(1, max(len(pairs), 1), squeeze=False)[0]
    for k, (ax, pair) in enumerate(zip(axes, pairs)):
        a, b = pair["models"]
        matrix = torch.tensor([[math.nan if v is None else v for v in row] for row in pair["jaccard"]], dtype=torch.float64)
        draw_heatmap(ax, matrix, "Blues", "Jaccard |A∩B| / |A∪B| of top tokens", figure, colorbar=k == len(pairs) - 1)
        ax.set_ylabel(f"{a}: emotion")
        ax.set_xlabel(f"{b}: emotion")
        ax.set_title(f"{a} (rows) vs {b} (columns)")
    figure.suptitle("Atlas: overlap of the emotion neurons' top tokens (cards) across models")
    return figure


def atlas_steering_figure(steering: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """One panel per alpha: per emotion, the share shift of the steered replies per model (bars,
    hatch per model), the control's (grey diamond), an x where the replies' text broke."""
    models = list(steering)
    alphas = sorted({r["alpha"] for rows in steering.values() for r in rows})
    # At least 12 inches: the atlas's plan steers at one alpha, and the legend needs the width.
    figure = new_figure(max(6.5 * len(alphas) + 1, 12), 5.8)
    axes = figure.subplots(1, max(len(alphas), 1), squeeze=False, sharey=True)[0]
    width = 0.8 / max(len(models), 1)
    for ax, alpha in zip(axes, alphas):
        for i, model in enumerate(models):
            offset = (i - (len(models) - 1) / 2) * width
            for row in steering[model]:
                if row["alpha"] != alpha:
                    continue
                x = EMOTIONS.index(row["emotion"]) + offset
                value = 100 * row["share_shift"]
                draw_bar(ax, x, value, width, color=EMOTION_COLORS[row["emotion"]], hatch=run_hatch(i), edgecolor="white")
                if not math.isnan(row["control_shift"]):
                    ax.plot(x, 100 * row["control_shift"], marker="D", markersize=5, color=CONTROL_COLOR,
                            markeredgecolor="black", linestyle="none", zorder=3)
                if row["text_broke"]:
                    ax.plot(x, value, **BROKE_MARKER, zorder=4)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=35, ha="right")
        _color_ticks(ax)
        ax.set_title(f"alpha = {alpha:g}")
        ax.grid(axis="y", alpha=0.3)
        ax.set_xlabel("steered emotion")
    axes[0].set_ylabel("share of replies labelled with it, minus unmodified (pp)")
    _legend_below(figure, models, Line2D([], [], label="text broke (coherence)", **BROKE_MARKER))
    figure.suptitle("Atlas: steering shifts per model, with the coherence flag")
    return figure


def _z(row: Mapping[str, Any], emotion: str, key: str) -> float:
    """(the neurons' mean - the control draws' mean) / their sd: how far the neurons sit among the draws."""
    entry = row["alignment"].get(emotion)
    if entry is None or not entry["control_sd"][key]:
        return math.nan
    return (entry["observed"][key] - entry["control_mean"][key]) / entry["control_sd"][key]


def atlas_directions_figure(directions: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Top: separation by relative depth (one line style per model); per emotion and model, how far
    the neurons' |cos| and signed cos with the emotion's direction sit above their control draws
    (in the draws' standard deviations; ringed where p <= 0.05/6). Bottom: each model's six class
    means on PC1/PC2 at its strongest layer, with the valence verdict."""
    models = list(directions)
    columns = math.lcm(3, len(models))
    figure = new_figure(max(15, 5 * len(models)), 10)
    grid = figure.add_gridspec(2, columns)
    separation_ax = figure.add_subplot(grid[0, : columns // 3])
    alignment_axes = [figure.add_subplot(grid[0, k * columns // 3: (k + 1) * columns // 3]) for k in (1, 2)]
    for i, model in enumerate(models):
        row = directions[model]
        separation_ax.plot(row["depth"], row["separation"], color="black", markersize=3, label=model, **run_style(i))
        separation_ax.plot(row["strongest_depth"], row["separation"][row["strongest_layer"]], marker="*", color="black",
                           markersize=12, linestyle="none")
    separation_ax.set_xlabel("relative depth (layer / layers)")
    separation_ax.set_ylabel("between / within class variance\n(standardised dimensions)")
    separation_ax.set_title("separation by depth (star: strongest)", fontsize=10)
    separation_ax.grid(alpha=0.3)
    width = 0.8 / max(len(models), 1)
    for ax, (key, label) in zip(alignment_axes, (("abs_cos", "|cos|"), ("signed_cos", "signed cos"))):
        for i, model in enumerate(models):
            offset = (i - (len(models) - 1) / 2) * width
            for slot, emotion in enumerate(EMOTIONS):
                z = _z(directions[model], emotion, key)
                if math.isnan(z):
                    continue
                draw_bar(ax, slot + offset, z, width, color=EMOTION_COLORS[emotion], hatch=run_hatch(i), edgecolor="white")
                if directions[model]["alignment"][emotion]["aligned"][key]:
                    ax.plot(slot + offset, z, **ALIGNED_MARKER)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=35, ha="right")
        _color_ticks(ax)
        ax.set_ylabel(f"neurons' mean {label} minus the controls',\nin the controls' sd")
        ax.set_title(f"write alignment: {label}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for k, model in enumerate(models):
        ax = figure.add_subplot(grid[1, k * columns // len(models): (k + 1) * columns // len(models)])
        row = directions[model]
        for emotion in EMOTIONS:
            point = row["coordinates"][emotion]
            ax.scatter(point["pc1"], point["pc2"], color=EMOTION_COLORS[emotion], marker=EMOTION_MARKERS[emotion], s=50)
        ax.axhline(0, color="#BFBFBF", linewidth=0.8)
        ax.axvline(0, color="#BFBFBF", linewidth=0.8)
        explained, valence = row["explained_variance"], row["valence"]
        ax.set_xlabel(f"PC1 ({100 * explained['pc1']:.0f}%)")
        ax.set_ylabel(f"PC2 ({100 * explained['pc2']:.0f}%)")
        verdict = "valence" if valence["pc1_is_valence"] else "not valence"
        ax.set_title(f"{model}: layer {row['strongest_layer']} of {row['layers']}, PC1 {verdict}", fontsize=10)
        ax.grid(alpha=0.3)
    handles = [*_model_handles(models),
               *(Line2D([], [], color="black", label=f"{m} (line)", markersize=3, **run_style(i)) for i, m in enumerate(models)),
               *(Line2D([], [], linestyle="none", color=EMOTION_COLORS[e], marker=EMOTION_MARKERS[e], label=e) for e in EMOTIONS),
               Line2D([], [], label="above the controls (p <= 0.05/6)", **ALIGNED_MARKER)]
    figure.legend(handles=handles, title="model (bar hatch, line style); emotion", loc="outside lower center", ncols=6)
    figure.suptitle("Atlas: emotion directions in the residual stream and the neurons' write alignment")
    return figure


ALIGNED_MARKER = {"marker": "o", "markersize": 9, "markerfacecolor": "none", "markeredgecolor": "black", "linestyle": "none"}
ATLAS_FIGURES = ("atlas_effects", "atlas_depth", "atlas_overlap", "atlas_steering")
DIRECTIONS_FIGURE = "atlas_directions"  # drawn when a model's run has directions


def atlas_figures(tables: Mapping[str, Any]) -> dict[str, Figure]:
    """Every atlas figure by name (atlas_effects is the main one)."""
    models = tables["models"]
    effect = next((e for e in tables["effect"].values() if e), None)
    figures = {
        "atlas_effects": atlas_effects_figure(tables["baseline"], tables["verdicts"], effect),
        "atlas_depth": atlas_depth_figure(tables["depth"], tables["depth_bins"]),
        "atlas_overlap": atlas_overlap_figure(tables["profile_overlap"]),
        "atlas_steering": atlas_steering_figure({m: tables["steering"][m] for m in models}),
    }
    directions = {m: row for m in models if (row := tables["directions"].get(m)) is not None}
    if directions:
        figures[DIRECTIONS_FIGURE] = atlas_directions_figure(directions)
    return figures
