"""Figure 15: where the masked emotion's misclassified dialogues go."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

from emoneurons.emotions import EMOTIONS
from emoneurons.report.figures.drawing import draw_heatmap, new_figure


def figure15_failures(
    distribution: torch.Tensor, failures: torch.Tensor | None = None,
    evaluated: Sequence[bool] | None = None, subtitle: str = "",
) -> Figure:
    """Figure 15: where the masked emotion's misclassified dialogues go (shares within failures)."""
    figure = new_figure(8, 6.5)
    ax = figure.subplots()
    size = len(EMOTIONS)
    empty = [bool(torch.isnan(distribution[i]).all()) for i in range(size)]
    labels = []
    for i, emotion in enumerate(EMOTIONS):
        if evaluated is not None and not evaluated[i]:
            labels.append(f"{emotion}\n(not evaluated)")
        elif failures is not None:
            n = int(failures[i])
            labels.append(f"{emotion}\n({n} failure{'s' if n != 1 else ''})")
        else:
            labels.append(emotion)
    draw_heatmap(ax, distribution, "Reds", "share of the masked emotion's failures", figure,
                 hidden=torch.eye(size, dtype=torch.bool), row_labels=labels, empty_rows=empty)
    ax.set_xlabel("wrongly predicted emotion")
    ax.set_ylabel("masked emotion (= true emotion of the dialogues)")
    ax.set_title("Figure 15: misclassifications after masking, within failures only\n"
                 "(each row sums to 100%; 'none' = no failures)"
                 + (f"\n{subtitle}" if subtitle else ""))
    return figure
