"""The stronger nulls drawn: each emotion's effect among many control draws (the draw-level null),
and its effect against the masking factor (graded masking's dose-response), its control beside it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from emoneurons.emotions import EMOTIONS
from emoneurons.report.figures.drawing import (
    EFFECT_LABELS,
    HOLLOW_MARKER,
    SPECIFIC_MARKER,
    format_masked_emotion_axis,
    new_figure,
    no_effects_figure,
    panel_axes,
)
from emoneurons.report.style import CONTROL_COLOR, EMOTION_COLORS, PANEL_GRID


def draw_null_figure(rows: Sequence[Mapping[str, Any]], measure: str, subtitle: str = "") -> Figure:
    """Per covered condition at select.top_rate on all layers (one column per emotion): its
    control draws' mean effects as dots, the set's own as a bar; a star where the rank verdict is
    specific, a hollow one where only the normal-prediction verdict is."""
    title = "The draw-level null: each emotion's neurons among many random control sets"
    figure = new_figure(12, 6)
    if not rows:
        return no_effects_figure(figure, title, "no draw-level null in this run (eval.null_draws: 0)")
    ax = figure.subplots()
    kind = rows[0].get("kind") or "control"
    for slot, emotion in enumerate(EMOTIONS):
        row = next((r for r in rows if r["masked"] == emotion), None)
        if row is None:
            continue
        ax.bar(slot, row["effect"], 0.5, color=EMOTION_COLORS[emotion], alpha=0.85)
        draws = row.get("draw_values") or []
        offsets = [0.3 * ((i % 7) / 6 - 0.5) for i in range(len(draws))]
        ax.plot([slot + 0.4 + o * 0.4 for o in offsets], draws, "o", color=CONTROL_COLOR, markeredgecolor="black",
                markersize=4, linestyle="none", gid=f"draws-{emotion}")
        low = min(v for v in (row["effect"], *draws, 0.0) if not math.isnan(v))
        if row["verdict"] == "specific":
            ax.plot([slot], [low], gid=f"specific-{emotion}", **SPECIFIC_MARKER)
        elif row["verdict_normal"] == "specific":
            ax.plot([slot], [low], gid=f"specific-normal-{emotion}", **HOLLOW_MARKER)
    format_masked_emotion_axis(ax, f"{EFFECT_LABELS.get(measure, measure)} vs unmodified (mean over test dialogues)")
    handles = [
        Line2D([], [], color="gray", linewidth=8, label="the emotion's neurons masked"),
        Line2D([], [], color=CONTROL_COLOR, marker="o", markeredgecolor="black", linestyle="none",
               label=f"{kind} random sets, one dot per draw ({rows[0]['draws']} draws)"),
        Line2D([], [], label="specific: rank among the draws, Holm p ≤ 0.05", **SPECIFIC_MARKER),
        Line2D([], [], label="specific by the normal prediction only", **HOLLOW_MARKER),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=9)
    figure.suptitle(title + (f"\n{subtitle}" if subtitle else ""))
    return figure


def dose_response_figure(rows: Sequence[Mapping[str, Any]], measure: str, subtitle: str = "") -> Figure:
    """One panel per emotion: the mean effect of its neurons (solid) and of its control (dashed)
    against the factor their activations are multiplied by, the unmodified model at factor 1."""
    title = "Graded masking: each emotion's effect against the masking factor"
    figure = new_figure(15, 8.5)
    if not rows:
        return no_effects_figure(figure, title, "no graded masking in this run (eval.scales: [])")
    axes = panel_axes(figure)
    kind = rows[0].get("kind") or "control"
    for ax, emotion in zip(axes, EMOTIONS):
        row = next((r for r in rows if r["emotion"] == emotion), None)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(emotion, color=EMOTION_COLORS[emotion])
        if row is None or not row["n_neurons"]:
            ax.text(0.5, 0.5, "no neurons", ha="center", va="center", transform=ax.transAxes)
            continue
        xs = [*row["scales"], 1.0]
        ax.plot(xs, [*row["mask"], 0.0], marker="o", color=EMOTION_COLORS[emotion], gid=f"mask-{emotion}")
        ax.plot(xs, [*row["control"], 0.0], marker="x", linestyle="--", color=CONTROL_COLOR, gid=f"control-{emotion}")
        verdict = "monotone" if row["monotone"] else f"{row['reversals']} reversal(s)"
        ax.text(0.98, 0.04, verdict, ha="right", va="bottom", transform=ax.transAxes, fontsize=9)
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
    for ax in axes[:: PANEL_GRID[1]]:
        ax.set_ylabel(EFFECT_LABELS.get(measure, measure))
    for ax in axes[-PANEL_GRID[1]:]:
        ax.set_xlabel("factor on the activations (0: zeroed, 1: unmodified)")
    handles = [Line2D([], [], color="gray", marker="o", label="the emotion's neurons"),
               Line2D([], [], color=CONTROL_COLOR, marker="x", linestyle="--", label=f"{kind} random neurons (mean of draws)")]
    figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=9)
    figure.suptitle(title + (f"\n{subtitle}" if subtitle else ""))
    return figure
