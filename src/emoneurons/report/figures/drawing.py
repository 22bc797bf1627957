"""What the figures share: a fixed-size figure, the six-panel grid, the 0-100% heatmap, the labels
of the effect figures and the figure shown when a run has no effects.

Every figure function (one module per figure in this package) takes plain data (dicts, lists,
tensors) and returns a matplotlib Figure made without pyplot (no global state, nothing to close);
`save_figure` in report/style.py writes it as PNG and SVG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # never a window: stages and tests run headless

import matplotlib.ticker  # noqa: E402
import torch  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from emoneurons.emotions import EMOTIONS  # noqa: E402
from emoneurons.report.style import DPI, EMOTION_COLORS, PANEL_GRID  # noqa: E402

EFFECT_LABELS = {"delta_masked": "Δ log p(masked emotion's label)", "masked_answer": "change in answering the masked emotion"}

SPECIFIC_MARKER = {"marker": "*", "color": "black", "markersize": 13, "linestyle": "none"}
HOLLOW_MARKER = SPECIFIC_MARKER | {"markerfacecolor": "white"}  # specific by a weaker or another test only

ZERO_BAR_LINEWIDTH = 3.0  # points: how thick a bar of height 0 is drawn


def draw_bar(ax: Axes, x: float, height: float, width: float, **style: Any) -> None:
    """ax.bar, and a bar of height exactly 0 drawn too: a rectangle of height 0 draws nothing, so a
    measured zero would read as a value missing. It is a line of the bar's width at 0 in the bar's
    colour (outlined in its edge colour, if it has one), over the zero line and the axis."""
    ax.bar(x, height, width, **style)
    if height != 0:
        return
    edge = style.get("edgecolor")
    outline = [] if edge in (None, "none") else [patheffects.Stroke(linewidth=ZERO_BAR_LINEWIDTH + 2, foreground=edge),
                                                 patheffects.Normal()]
    stub = ax.hlines(0, x - width / 2, x + width / 2, colors=style.get("color"), linewidth=ZERO_BAR_LINEWIDTH, zorder=2.6,
                     clip_on=False, path_effects=outline, gid="zero-bar")
    stub.set_in_layout(False)  # the layout is the same whether a bar is 0 or not


def dodge_offsets(positions: Sequence[float], series: int, share: float = 0.5) -> list[float]:
    """Sideways offsets of `series` lines drawn over the same x `positions`, spread over `share` of
    the smallest gap between positions: points that coincide stay side by side, none hiding another."""
    gaps = [b - a for a, b in zip(sorted(positions), sorted(positions)[1:]) if b > a]
    step = share * (min(gaps) if gaps else 1.0) / max(series - 1, 1)
    return [(k - (series - 1) / 2) * step for k in range(series)]


def new_figure(width: float, height: float) -> Figure:
    """A figure of a fixed pixel size (width*DPI x height*DPI) that lays itself out."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def panel_axes(figure: Figure) -> list[Axes]:
    rows, cols = PANEL_GRID
    axes = figure.subplots(rows, cols, sharey=True, squeeze=False)
    return [axes[i // cols][i % cols] for i in range(len(EMOTIONS))]


def format_target_panel(ax: Any, target: str, suffix: str = "") -> None:
    """One Figure 2 panel: the target's title, the unmodified + six masked slots, 0-100% axis."""
    ax.set_title(f"target: {target}{suffix}", color=EMOTION_COLORS[target], fontweight="bold")
    ax.set_xticks(range(len(EMOTIONS) + 1), ["unmodified", *EMOTIONS], rotation=35, ha="right")
    ax.set_ylim(0, 108)
    ax.grid(axis="y", alpha=0.3)


def label_panel_grid(axes: Any) -> None:
    """Axis labels on the outer panels of Figure 2's grid only."""
    for ax in axes[:: PANEL_GRID[1]]:
        ax.set_ylabel("accuracy on the target (%)")
    for ax in axes[-PANEL_GRID[1]:]:
        ax.set_xlabel("neurons masked")


def no_effects_figure(figure: Figure, title: str,
                      text: str = "no paired effects in this eval.json (written before they were measured)") -> Figure:
    """A figure saying, in `text`, why there is nothing to draw."""
    ax = figure.subplots()
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    figure.suptitle(title)
    return figure


def format_masked_emotion_axis(ax: Any, ylabel: str) -> None:
    """An effect panel over the six masked emotions: the zero line, coloured emotion ticks, labels, grid."""
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS)
    for label, emotion in zip(ax.get_xticklabels(), EMOTIONS):
        label.set_color(EMOTION_COLORS[emotion])
    ax.set_xlabel("masked emotion")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.15)


def draw_heatmap(
    ax: Axes, matrix: torch.Tensor, cmap: str, colorbar_label: str, figure: Figure,
    hidden: torch.Tensor | None = None, row_labels: Sequence[str] = EMOTIONS,
    col_labels: Sequence[str] = EMOTIONS, empty_rows: Sequence[bool] | None = None,
    colorbar: bool = True,
) -> None:
    """A 0-1 heatmap annotated in percent; `hidden` cells show '—', `empty_rows` read 'none'."""
    values = matrix.to(torch.float64).clone()
    if hidden is not None:
        values[hidden] = math.nan
    shown = values.numpy()
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="#E6E6E6")
    image = ax.imshow(shown, cmap=colormap, vmin=0.0, vmax=1.0)
    for i in range(shown.shape[0]):
        for j in range(shown.shape[1]):
            value = shown[i, j]
            if math.isnan(value):
                text = "none" if empty_rows is not None and empty_rows[i] and (
                    hidden is None or not bool(hidden[i, j])) else "—"
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color="#6E6E6E")
            else:
                ax.text(j, i, f"{100 * value:.0f}%", ha="center", va="center", fontsize=9,
                        color="white" if value > 0.6 else "black")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=35, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    for label, emotion in zip(ax.get_xticklabels(), EMOTIONS):
        label.set_color(EMOTION_COLORS[emotion])
    for label, emotion in zip(ax.get_yticklabels(), EMOTIONS):
        label.set_color(EMOTION_COLORS[emotion])
    if colorbar:
        bar = figure.colorbar(image, ax=ax, shrink=0.8)
        bar.set_label(colorbar_label)
        bar.ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(xmax=1.0))
