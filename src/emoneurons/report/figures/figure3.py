"""Figure 3: accuracy change as the masking ratio grows, and its continuous variant (the paired
effect against random neurons over the ratios)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from emoneurons.emotions import EMOTIONS
from emoneurons.report.figures.drawing import (
    EFFECT_LABELS,
    SPECIFIC_MARKER,
    dodge_offsets,
    new_figure,
    no_effects_figure,
    panel_axes,
)
from emoneurons.report.results.accuracy import as_percent
from emoneurons.report.results.sweeps import rows_matching
from emoneurons.report.style import CONTROL_COLOR, EMOTION_COLORS, EMOTION_MARKERS, PANEL_GRID


def figure3_ratio_sweep(rows: Sequence[Mapping[str, Any]], subtitle: str = "") -> Figure:
    """Figure 3: per masked emotion, accuracy change (pp) of that emotion (thick) and of the others
    (thin) as the masking ratio grows; the random-neuron control of the target dashed. The seven
    lines are drawn side by side at each ratio (`dodge_offsets`): equal changes are common on a
    small test split, and lines drawn over each other would hide each other's markers."""
    figure = new_figure(15, 8.5)
    axes = panel_axes(figure)
    ratios = sorted({float(r["ratio"]) for r in rows})
    *offsets, control_offset = dodge_offsets([as_percent(r) for r in ratios], len(EMOTIONS) + 1)
    for ax, masked in zip(axes, EMOTIONS):
        for emotion, offset in zip(EMOTIONS, offsets):
            line = sorted(rows_matching(rows, masked=masked, emotion=emotion, condition="mask"),
                          key=lambda r: r["ratio"])
            if not line:
                continue
            own = emotion == masked
            ax.plot([as_percent(r["ratio"]) + offset for r in line], [r["accuracy_change"] for r in line],
                    color=EMOTION_COLORS[emotion], linewidth=2.8 if own else 1.1,
                    alpha=1.0 if own else 0.6, marker=EMOTION_MARKERS[emotion],
                    markersize=7 if own else 4, zorder=3 if own else 2)
        control = sorted(rows_matching(rows, masked=masked, emotion=masked, condition="control"),
                         key=lambda r: r["ratio"])
        if control:
            ax.plot([as_percent(r["ratio"]) + control_offset for r in control], [r["accuracy_change"] for r in control],
                    color=CONTROL_COLOR, linestyle="--", linewidth=1.8, marker="x", zorder=2)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(f"{masked} neurons masked", color=EMOTION_COLORS[masked], fontweight="bold")
        ax.set_xticks([as_percent(r) for r in ratios], [f"{as_percent(r):g}%" for r in ratios])
        ax.grid(alpha=0.3)
    for ax in axes[:: PANEL_GRID[1]]:
        ax.set_ylabel("accuracy change vs unmodified (pp)")
    for ax in axes[-PANEL_GRID[1]:]:
        ax.set_xlabel("masking ratio (% of all FFN neurons)\nthe lines drawn side by side at each ratio")
    handles = [
        *[Line2D([], [], color=EMOTION_COLORS[e], marker=EMOTION_MARKERS[e], linewidth=2, label=e)
          for e in EMOTIONS],
        Line2D([], [], color="black", linewidth=2.8, label="the masked emotion itself"),
        Line2D([], [], color="black", linewidth=1.1, alpha=0.6, label="other emotions"),
        Line2D([], [], color=CONTROL_COLOR, linestyle="--", marker="x",
               label="random-neuron control (masked emotion)"),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=9, fontsize=9)
    figure.suptitle("Figure 3: accuracy change as the masking ratio grows (all layers)"
                    + (f"\n{subtitle}" if subtitle else ""))
    return figure


def figure3_effect(rows: Sequence[Mapping[str, Any]], measure: str, subtitle: str = "") -> Figure:
    """Figure 3, continuous variant: per masked emotion, its test effect (95% CI) over the masking
    ratios (all layers), its random controls' dashed beside it, stars where the corrected test passes."""
    title = "Figure 3 (effect): masking ratio, emotion neurons vs random neurons (all layers)"
    figure = new_figure(15, 8.5)
    if not rows:
        return no_effects_figure(figure, title)
    axes = panel_axes(figure)
    ratios = sorted({r["ratio"] for r in rows})
    own_offset, control_offset = dodge_offsets([as_percent(r) for r in ratios], 2, share=0.2)
    for ax, masked in zip(axes, EMOTIONS):
        line = sorted(rows_matching(rows, masked=masked), key=lambda r: r["ratio"])
        xs = [as_percent(r["ratio"]) + own_offset for r in line]
        if line:
            ax.errorbar(xs, [r["effect"] for r in line], color=EMOTION_COLORS[masked], linewidth=2.2,
                        marker=EMOTION_MARKERS[masked], capsize=3, gid="effect",
                        yerr=[[max(r["effect"] - r["effect_ci"][0], 0.0) if not math.isnan(r["effect_ci"][0]) else 0.0 for r in line],
                              [max(r["effect_ci"][1] - r["effect"], 0.0) if not math.isnan(r["effect_ci"][1]) else 0.0 for r in line]])
            ax.plot([x - own_offset + control_offset for x in xs], [r["control"] for r in line], color=CONTROL_COLOR,
                    linestyle="--", marker="x", gid="control")
            stars = [(x, r["effect"]) for x, r in zip(xs, line) if r["verdict"] == "specific"]
            if stars:
                ax.plot([x for x, _ in stars], [y for _, y in stars], gid="specific", zorder=4, **SPECIFIC_MARKER)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(f"{masked} neurons masked", color=EMOTION_COLORS[masked], fontweight="bold")
        ax.set_xticks([as_percent(r) for r in ratios], [f"{as_percent(r):g}%" for r in ratios])
        ax.grid(alpha=0.3)
    for ax in axes[:: PANEL_GRID[1]]:
        ax.set_ylabel(EFFECT_LABELS.get(measure, measure))
    for ax in axes[-PANEL_GRID[1]:]:
        ax.set_xlabel("masking ratio (% of all FFN neurons)\nthe control drawn just right of the effect")
    handles = [
        Line2D([], [], color="black", linewidth=2.2, marker="o", label="the masked emotion's neurons (95% CI, paired bootstrap)"),
        Line2D([], [], color=CONTROL_COLOR, linestyle="--", marker="x", label="random neurons, same count per layer"),
        Line2D([], [], label="specific (Holm-corrected sign-flip test vs random, p ≤ 0.05)", **SPECIFIC_MARKER),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9)
    figure.suptitle(title + (f"\n{subtitle}" if subtitle else ""))
    return figure
