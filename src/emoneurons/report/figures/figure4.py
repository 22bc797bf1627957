"""Figure 4: accuracy change when an emotion's neurons are masked in one range of layers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from emoneurons.emotions import EMOTIONS
from emoneurons.report.figures.drawing import draw_bar, new_figure
from emoneurons.report.results.accuracy import as_percent
from emoneurons.report.results.sweeps import rows_matching
from emoneurons.report.style import CONTROL_COLOR, EMOTION_COLORS, LAYER_RANGE_LABELS, LAYER_RANGES


def _emotion_handles(emotions: Sequence[str] = EMOTIONS) -> list[Patch]:
    return [Patch(facecolor=EMOTION_COLORS[e], label=e) for e in emotions]


def figure4_layer_sweep(rows: Sequence[Mapping[str, Any]], subtitle: str = "") -> Figure:
    """Figure 4: accuracy change (pp) of each emotion when its own neurons are masked in the bottom,
    middle or top third of the layers or in all; the random-neuron control marked on each bar."""
    figure = new_figure(12, 6)
    ax = figure.subplots()
    width = 0.8 / len(EMOTIONS)
    present = [r for r in LAYER_RANGES if rows_matching(rows, layers=r)]
    for slot, emotion in enumerate(EMOTIONS):
        offset = (slot - (len(EMOTIONS) - 1) / 2) * width
        for group, layers in enumerate(present):
            masked = rows_matching(rows, masked=emotion, emotion=emotion, layers=layers, condition="mask")
            if masked:
                draw_bar(ax, group + offset, masked[0]["accuracy_change"], width, color=EMOTION_COLORS[emotion])
            control = rows_matching(rows, masked=emotion, emotion=emotion, layers=layers,
                                condition="control")
            if control:
                ax.plot(group + offset, control[0]["accuracy_change"], marker="D", markersize=5,
                        color=CONTROL_COLOR, markeredgecolor="black", linestyle="none", zorder=3)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(present)), [LAYER_RANGE_LABELS[r] for r in present])
    ax.set_xlabel("layers whose emotion neurons are masked")
    ax.set_ylabel("accuracy change of the masked emotion vs unmodified (pp)")
    ratio = next((r["ratio"] for r in rows), None)
    ratio_text = f" (masking ratio {as_percent(ratio):g}%)" if ratio is not None else ""
    ax.set_title(f"Figure 4: accuracy change by layer range{ratio_text}"
                 + (f"\n{subtitle}" if subtitle else ""))
    handles = [
        *_emotion_handles(),
        Line2D([], [], marker="D", color=CONTROL_COLOR, markeredgecolor="black", linestyle="none",
               label="random-neuron control"),
    ]
    figure.legend(handles=handles, title="masked = evaluated\nemotion", loc="outside right upper",
                  fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    values = [float(r["accuracy_change"]) for r in rows
              if r["masked"] == r["emotion"] and not math.isnan(float(r["accuracy_change"]))]
    low, high = min(values + [0.0]), max(values + [0.0])
    pad = 0.08 * ((high - low) or 1.0)
    ax.set_ylim(low - pad, high + pad)  # bars stick to 0 otherwise, hiding markers at 0
    return figure
