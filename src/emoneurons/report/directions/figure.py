"""The directions figure (reports/figures/directions.png), from directions.json: (a) separation of
the six emotions by layer, the strongest layer marked; (b) the six standardised class means on
PC1 and PC2 at that layer; (c, d) each emotion's neurons' mean |cos| and signed cos with its
direction, against the middle 95% of the control draws' means and the same neurons' mean
against the other emotions' directions."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # never a window: stages and tests run headless

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from emoneurons.emotions import EMOTIONS  # noqa: E402
from emoneurons.io.directions_file import DirectionsFile  # noqa: E402
from emoneurons.report.directions.section import control_words  # noqa: E402
from emoneurons.report.style import CONTROL_COLOR, DPI, EMOTION_COLORS, EMOTION_MARKERS, save_figure  # noqa: E402

ALIGNMENT_PANELS = (("abs_cos", "mean |cos(write, direction)|"),
                    ("signed_cos", "mean sign(value) x cos(write, direction)"))


def _separation_panel(ax, directions: DirectionsFile) -> None:
    separation = directions.by_layer["separation"]
    ax.plot(range(len(separation)), separation, color="#4D4D4D", marker=".")
    strongest = directions.strongest_layer
    ax.axvline(strongest, color="#4D4D4D", linestyle=":", linewidth=1.0)
    ax.set_xlabel("layer (residual after the block)")
    ax.set_ylabel("between / within class variance\n(mean over standardised dimensions)")
    ax.set_title(f"(a) separation by layer; strongest: {strongest}", fontsize=9)
    ax.grid(alpha=0.3)


def _pca_panel(ax, directions: DirectionsFile) -> None:
    geometry = directions.geometry
    for emotion in EMOTIONS:
        point = geometry["coordinates"][emotion]
        ax.scatter(point["pc1"], point["pc2"], color=EMOTION_COLORS[emotion], marker=EMOTION_MARKERS[emotion], s=50)
    ax.axhline(0, color="#BFBFBF", linewidth=0.8)
    ax.axvline(0, color="#BFBFBF", linewidth=0.8)
    explained = geometry["explained_variance"]
    ax.set_xlabel(f"PC1 ({100 * explained['pc1']:.0f}% of the means' variance)")
    ax.set_ylabel(f"PC2 ({100 * explained['pc2']:.0f}%)")
    valence = geometry["valence"]
    verdict = "valence" if valence["pc1_is_valence"] else "not valence"
    ax.set_title(f"(b) class means at layer {geometry['layer']}: PC1 {verdict} (r {valence['r']:+.2f})", fontsize=9)
    ax.grid(alpha=0.3)


def _alignment_panel(ax, directions: DirectionsFile, key: str, label: str, letter: str) -> None:
    emotions = [e for e in EMOTIONS if e in (directions.emotions or {})]
    for x, emotion in enumerate(emotions):
        entry = directions.emotions[emotion]
        low, high = entry.control_interval[key]
        ax.plot([x, x], [low, high], color=CONTROL_COLOR, linewidth=6, solid_capstyle="butt")
        ax.scatter(x, entry.control_mean[key], color="#4D4D4D", marker="_", s=120, zorder=3)
        ax.scatter(x + 0.25, entry.other_emotions[key], color=EMOTION_COLORS[emotion], marker="x", s=30, zorder=3)
        ax.scatter(x, entry.observed[key], color=EMOTION_COLORS[emotion], marker=EMOTION_MARKERS[emotion], s=50, zorder=4,
                   edgecolors="#000000" if entry.aligned[key] else "none")
    ax.set_xticks(range(len(emotions)), emotions, rotation=30, fontsize=8)
    ax.set_ylabel(label)
    if key == "signed_cos":
        ax.axhline(0, color="#BFBFBF", linewidth=0.8)
    alignment = directions.alignment
    ax.set_title(f"({letter}) neurons at {alignment['ratio']:g} vs {alignment['draws']} {control_words(alignment['control'])} draws",
                 fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    if not emotions:
        ax.text(0.5, 0.5, "no emotion has selected neurons", ha="center", va="center", transform=ax.transAxes)


def directions_figure(directions: DirectionsFile) -> Figure:
    figure = Figure(figsize=(11, 8), dpi=DPI, layout="constrained")
    axes = figure.subplots(2, 2)
    _separation_panel(axes[0][0], directions)
    _pca_panel(axes[0][1], directions)
    for ax, (key, label), letter in zip(axes[1], ALIGNMENT_PANELS, "cd"):
        _alignment_panel(ax, directions, key, label, letter)
    handles = [Line2D([], [], linestyle="none", color=EMOTION_COLORS[e], marker=EMOTION_MARKERS[e], label=e) for e in EMOTIONS]
    handles += [
        Line2D([], [], color=CONTROL_COLOR, linewidth=6, label="control draws'\nmiddle 95%"),
        Line2D([], [], linestyle="none", color="#4D4D4D", marker="_", markersize=12, label="control draws' mean"),
        Line2D([], [], linestyle="none", color="#4D4D4D", marker="x", label="the same neurons vs\nthe other emotions'\ndirections"),
        Line2D([], [], linestyle="none", marker="o", markerfacecolor="none", color="#000000",
               label="ringed: above the controls\n(p <= 0.05/6)"),
    ]
    figure.legend(handles=handles, loc="outside right center", fontsize=8)
    figure.suptitle(f"Emotion directions in the residual stream: {directions.model}", fontsize=10)
    return figure


def save_directions_figure(directions: DirectionsFile, directory: str | Path, name: str = "directions") -> tuple[Path, Path]:
    """Write `name`.png and `name`.svg (no dates, fixed SVG ids: an unchanged figure is byte-identical)."""
    return save_figure(directions_figure(directions), directory, name)
