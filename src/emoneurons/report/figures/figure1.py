"""Figure 1: emotion neurons per layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from emoneurons.emotions import EMOTIONS
from emoneurons.report.figures.drawing import new_figure
from emoneurons.report.style import EMOTION_COLORS, EMOTION_MARKERS


def figure1_per_layer(per_layer: Mapping[str, Sequence[int]], subtitle: str = "") -> Figure:
    """Figure 1: emotion neurons per layer, one line per emotion."""
    figure = new_figure(10, 5.5)
    ax = figure.subplots()
    for emotion in EMOTIONS:
        counts = list(per_layer.get(emotion, []))
        ax.plot(range(len(counts)), counts, color=EMOTION_COLORS[emotion],
                marker=EMOTION_MARKERS[emotion], markersize=5, linewidth=1.8, alpha=0.9,
                label=f"{emotion} ({sum(counts):,})")
    ax.set_xlabel("layer (0 = first)")
    ax.set_ylabel("emotion neurons in the layer (count)")
    ax.set_title("Figure 1: emotion neurons per layer" + (f"\n{subtitle}" if subtitle else ""))
    ax.legend(title="emotion (total neurons)", ncols=2, fontsize=9)
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.yaxis.get_major_locator().set_params(integer=True)
    return figure
