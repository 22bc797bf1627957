"""Figure 2: accuracy per target emotion with each emotion's neurons masked, and its continuous
variant (the paired effect of each emotion's neurons against random neurons)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from emoneurons.emotions import EMOTIONS
from emoneurons.report.figures.drawing import (
    EFFECT_LABELS,
    HOLLOW_MARKER,
    SPECIFIC_MARKER,
    draw_bar,
    format_masked_emotion_axis,
    format_target_panel,
    label_panel_grid,
    new_figure,
    no_effects_figure,
    panel_axes,
)
from emoneurons.report.results.accuracy import as_percent
from emoneurons.report.results.sweeps import rows_matching
from emoneurons.report.style import CHANCE_COLOR, CONTROL_COLOR, CONTROL_HATCH, EMOTION_COLORS, UNMODIFIED_COLOR


def figure2_masking(view: Mapping[str, Any], subtitle: str = "") -> Figure:
    """Figure 2: per target emotion, accuracy unmodified vs with each emotion's neurons masked
    (95% Clopper-Pearson CI), the random-neuron control beside each masked bar."""
    figure = new_figure(15, 8.5)
    axes = panel_axes(figure)
    base, masked, control = view["unmodified"], view["masked"], view["control"]
    chance = as_percent(view.get("chance", 1 / len(EMOTIONS)))
    width = 0.4
    for ax, target in zip(axes, EMOTIONS):
        value = as_percent(base["accuracy"][target])
        low, high = (as_percent(v) for v in base["ci95"][target])
        draw_bar(ax, 0, value, width * 1.6, color=UNMODIFIED_COLOR,
                 yerr=_yerr(value, low, high), capsize=3, ecolor="black")
        for slot, emotion in enumerate(EMOTIONS, start=1):
            if emotion in masked:
                value = as_percent(masked[emotion]["accuracy"][target])
                low, high = (as_percent(v) for v in masked[emotion]["ci95"][target])
                draw_bar(ax, slot - width / 2, value, width, color=EMOTION_COLORS[emotion],
                         edgecolor="black" if emotion == target else "none",
                         linewidth=1.5 if emotion == target else 0,
                         yerr=_yerr(value, low, high), capsize=2, ecolor="black")
            if emotion in control:
                draw_bar(ax, slot + width / 2, as_percent(control[emotion][target]), width,
                         color=CONTROL_COLOR, hatch=CONTROL_HATCH, edgecolor=EMOTION_COLORS[emotion])
        ax.axhline(chance, color=CHANCE_COLOR, linestyle=":", linewidth=1)
        n = (view.get("n_per_emotion") or {}).get(target)
        format_target_panel(ax, target, f" (n = {n} test dialogues)" if n is not None else "")
        for label, emotion in zip(ax.get_xticklabels()[1:], EMOTIONS):
            label.set_color(EMOTION_COLORS[emotion])
    label_panel_grid(axes)
    draws = sorted(set((view.get("control_draws") or {}).values()))
    draw_text = f"mean of {draws[0]} draw{'s' if draws[0] != 1 else ''}" if len(draws) == 1 else "mean of draws"
    handles = [
        Patch(facecolor=UNMODIFIED_COLOR, label="unmodified"),
        *[Patch(facecolor=EMOTION_COLORS[e], label=f"{e} neurons masked") for e in EMOTIONS],
        Patch(facecolor=CONTROL_COLOR, hatch=CONTROL_HATCH, edgecolor="black",
              label=f"random neurons masked, same count per layer ({draw_text})"),
        Patch(facecolor="white", edgecolor="black", linewidth=1.5, label="target's own neurons masked"),
        Line2D([], [], color="black", marker="|", linestyle="none", markersize=10, label="95% CI (Clopper-Pearson)"),
        Line2D([], [], color=CHANCE_COLOR, linestyle=":", label=f"chance ({chance:.1f}%)"),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=9)
    figure.suptitle("Figure 2: accuracy per target emotion, unmodified vs each emotion's neurons masked"
                    + (f"\n{subtitle}" if subtitle else ""))
    return figure


def _yerr(value: float, low: float, high: float) -> list[list[float]] | None:
    if any(math.isnan(v) for v in (value, low, high)):
        return None
    return [[max(value - low, 0.0)], [max(high - value, 0.0)]]


def _effect_errorbar(ax: Any, x: float, value: float, ci: tuple[float, float], **style: Any) -> None:
    ax.errorbar([x], [value], yerr=_yerr(value, *ci), linestyle="none", capsize=3, **style)


CONTROL_LABELS = {"matched": "random neurons matched in P(active), same count per layer",
                  "uniform": "random neurons, same count per layer"}


def figure2_effect(rows: Sequence[Mapping[str, Any]], measure: str, subtitle: str = "") -> Figure:
    """Figure 2, continuous variant: per masked emotion, its test effect (mean over the test
    dialogues, paired bootstrap 95% CI) beside its random controls' of the verdict's null kind
    (hatched), a star where the Holm-corrected sign-flip test finds the emotion's neurons specific
    against them, a hollow star where only another kind's test does."""
    title = "Figure 2 (effect): each emotion's neurons masked vs random neurons, paired per dialogue"
    figure = new_figure(12, 6)
    if not rows:
        return no_effects_figure(figure, title)
    ax = figure.subplots()
    width = 0.38
    tops = []
    for slot, emotion in enumerate(EMOTIONS):
        found = rows_matching(rows, masked=emotion)
        if not found:
            continue
        row = found[0]
        draw_bar(ax, slot - width / 2, row["effect"], width, color=EMOTION_COLORS[emotion], label=f"{emotion} neurons masked")
        _effect_errorbar(ax, slot - width / 2, row["effect"], row["effect_ci"], color="black")
        if not math.isnan(row["control"]):
            draw_bar(ax, slot + width / 2, row["control"], width, color=CONTROL_COLOR, hatch=CONTROL_HATCH,
                     edgecolor=EMOTION_COLORS[emotion], label="_control")
            _effect_errorbar(ax, slot + width / 2, row["control"], row["control_ci"], color="dimgray")
        low = min(v for v in (row["effect"], row["effect_ci"][0], row["control"], 0.0) if not math.isnan(v))
        tops.append(low)
        if row["verdict"] == "specific":
            ax.plot([slot - width / 2], [low], gid=f"specific-{emotion}", **SPECIFIC_MARKER)
        elif any(v == "specific" for v in (row.get("verdicts") or {}).values()):  # only against another control kind
            ax.plot([slot - width / 2], [low], gid=f"specific-other-{emotion}", **HOLLOW_MARKER)
    format_masked_emotion_axis(ax, f"{EFFECT_LABELS.get(measure, measure)} vs unmodified")
    null = rows[0].get("null", "uniform")
    others = sorted({k for r in rows for k in (r.get("verdicts") or {}) if k != null})
    handles = [
        *[Patch(facecolor=EMOTION_COLORS[e], label=f"{e} neurons masked") for e in EMOTIONS],
        Patch(facecolor=CONTROL_COLOR, hatch=CONTROL_HATCH, edgecolor="black", label=CONTROL_LABELS.get(null, null)),
        Line2D([], [], color="black", marker="|", linestyle="none", markersize=10, label="95% CI (paired bootstrap)"),
        Line2D([], [], label=f"specific vs {null} controls (sign-flip test, Holm p ≤ 0.05)", **SPECIFIC_MARKER),
        *([Line2D([], [], label=f"specific only vs {', '.join(others)} controls",
                  **HOLLOW_MARKER)] if others else []),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9)
    figure.suptitle(title + (f"\n{subtitle}" if subtitle else ""))
    return figure
