"""Figure 14: overlap of the emotions' neuron sets."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from emoneurons.report.figures.drawing import draw_heatmap, new_figure


def figure14_overlap(overlap: torch.Tensor, subtitle: str = "") -> Figure:
    """Figure 14: overlap ratio |A∩B|/|A∪B| between the emotions' neuron sets."""
    figure = new_figure(7.5, 6.5)
    ax = figure.subplots()
    draw_heatmap(ax, overlap, "Blues", "overlap ratio |A∩B| / |A∪B|", figure)
    ax.set_xlabel("comparison emotion (B)")
    ax.set_ylabel("reference emotion (A)")
    ax.set_title("Figure 14: overlap of emotion neuron sets\n|A∩B| / |A∪B| (Jaccard)"
                 + (f", {subtitle}" if subtitle else ""))
    return figure
