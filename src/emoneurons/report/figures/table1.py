"""Table 1 drawn as bars: dialogues kept per emotion after filtering, and the dropped ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from emoneurons.emotions import EMOTIONS
from emoneurons.report.figures.drawing import new_figure
from emoneurons.report.style import EMOTION_COLORS


def table1_figure(filter_json: Mapping[str, Any]) -> Figure:
    """Table 1 as bars: dialogues kept per emotion after filtering (with their share), and the
    dropped ones stacked after them."""
    table = filter_json.get("table1") or {}
    dropped = filter_json.get("dropped_per_emotion") or {}
    kept_counts = [int((table.get(e) or {}).get("count", 0)) for e in EMOTIONS]
    percents = [float((table.get(e) or {}).get("percent", 0.0)) for e in EMOTIONS]
    dropped_counts = [int(dropped.get(e, 0)) for e in EMOTIONS]
    figure = new_figure(9, 4.8)
    ax = figure.subplots()
    y = list(range(len(EMOTIONS)))
    colors = [EMOTION_COLORS[e] for e in EMOTIONS]
    ax.barh(y, kept_counts, color=colors, label="kept")
    ax.barh(y, dropped_counts, left=kept_counts, color=colors, alpha=0.3, hatch="//",
            edgecolor="white", label="dropped by the filter")
    widest = max([k + d for k, d in zip(kept_counts, dropped_counts)] + [1])
    for row, (kept, percent, drop) in enumerate(zip(kept_counts, percents, dropped_counts)):
        ax.text(kept + drop + widest * 0.01, row, f"{kept:,} kept ({percent:.2f}%), {drop:,} dropped",
                va="center", fontsize=9)
    ax.set_yticks(y, EMOTIONS)
    ax.invert_yaxis()  # paper order from the top
    ax.set_xlim(0, widest * 1.45)
    ax.set_xlabel("dialogues (count)")
    ax.set_ylabel("intended emotion")
    kept_total = int((table.get("total") or {}).get("count", sum(kept_counts)))
    generated = int(filter_json.get("generated", kept_total + sum(dropped_counts)))
    ax.set_title(
        f"Table 1: dialogues kept per emotion after filtering\n"
        f"{kept_total:,} of {generated:,} generated kept "
        f"(at least {filter_json.get('min_agree', '?')} agreeing labels)"
    )
    figure.legend(handles=[
        Patch(facecolor="#777777", label="kept"),
        Patch(facecolor="#777777", alpha=0.3, hatch="//", edgecolor="white",
              label="dropped by the filter"),
    ], loc="outside lower center", ncols=2)
    ax.grid(axis="x", alpha=0.3)
    return figure
