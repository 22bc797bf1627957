"""The steering figure: alpha on x, the shift from the unmodified model on y (share of replies
labelled with the steered emotion; mean log p of it), one line per emotion, random-neuron
controls dashed in the same colour. With coherence in the record (evaluate/coherence.py), a second
row shows the same replies' coherence shifts (log-likelihood per token under the unmodified model;
repeated n-gram share) with the text-broke margins dotted, and every point of the top row whose
replies broke is ringed in black. Drawn from reports/steer/steer.json."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # never a window: stages and tests run headless

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from emoneurons.emotions import EMOTIONS  # noqa: E402
from emoneurons.io.steer_file import SteerFile  # noqa: E402
from emoneurons.report.style import DPI, EMOTION_COLORS, EMOTION_MARKERS, save_figure  # noqa: E402

PANELS = (("share_shift", "share of replies labelled with the steered emotion\nminus unmodified (pp)", 100.0),
          ("logp_shift", "mean log p(steered emotion | reply)\nminus unmodified", 1.0))
COHERENCE_PANELS = (("coherence.logp_per_token_shift", "replies' log-likelihood per token\n(unmodified model) minus unmodified", 1.0),
                    ("coherence.repeated_share_shift", "replies' repeated {n}-gram share\nminus unmodified (pp)", 100.0))
BROKE = "#000000"


def steering_lines(steer: SteerFile, key: str) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per emotion, the (alpha, value of `key`) points of its neurons (`steered`) and of its
    controls averaged over draws (`control`); alpha 1 is the unmodified model, shift 0 by definition."""
    lines: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for emotion in EMOTIONS:
        entry = steer.emotions.get(emotion)
        if entry is None or not entry.steered:
            continue
        steered = {float(s.alpha): s.value(key) for s in entry.steered if s.value(key) is not None}
        by_alpha: dict[float, list[float]] = {}
        for c in entry.controls:
            if c.value(key) is not None:
                by_alpha.setdefault(float(c.alpha), []).append(c.value(key))
        control = {alpha: sum(v) / len(v) for alpha, v in by_alpha.items()}
        lines[emotion] = {name: sorted({1.0: 0.0, **points}.items()) if points else []
                          for name, points in (("steered", steered), ("control", control))}
    return lines


def broken_points(steer: SteerFile, key: str) -> list[tuple[float, float]]:
    """The (alpha, value of `key`) of every condition, steered or control draw, whose replies broke
    (coherence.text_broke): where the top row's rings go."""
    points = []
    for entry in steer.emotions.values():
        for condition in (*entry.steered, *entry.controls):
            if condition.text_broke() and condition.value(key) is not None:
                points.append((float(condition.alpha), condition.value(key)))
    return points


def _draw_panel(ax, steer: SteerFile, key: str, scale: float, drawn: list[str]) -> None:
    for emotion, line in steering_lines(steer, key).items():
        colour, marker = EMOTION_COLORS[emotion], EMOTION_MARKERS[emotion]
        for name, style in (("steered", "-"), ("control", "--")):
            if line[name]:
                xs, ys = zip(*line[name])
                ax.plot(xs, [scale * y for y in ys], linestyle=style, marker=marker, color=colour,
                        alpha=1.0 if name == "steered" else 0.6, markersize=4)
        if emotion not in drawn:
            drawn.append(emotion)
    ax.axhline(0, color="#7F7F7F", linewidth=0.8)
    ax.set_xlabel("alpha")
    ax.grid(alpha=0.3)


def steering_figure(steer: SteerFile) -> Figure:
    rule = steer.coherence  # absent in a steer.json from before coherence: the top row only
    figure = Figure(figsize=(10, 7.5 if rule else 4), dpi=DPI, layout="constrained")
    axes = figure.subplots(2 if rule else 1, 2, squeeze=False)
    drawn: list[str] = []
    for ax, (key, label, scale) in zip(axes[0], PANELS):
        _draw_panel(ax, steer, key, scale, drawn)
        ax.set_ylabel(label)
        if rule:
            # A control is drawn as the mean of its draws; a ring marks each broken draw's own value.
            broken = broken_points(steer, key)
            if broken:
                xs, ys = zip(*broken)
                ax.scatter(xs, [scale * y for y in ys], s=70, facecolors="none", edgecolors=BROKE, linewidths=1.0, zorder=3)
    if rule:
        margins = (-rule["broke_logp_drop"], 100.0 * rule["broke_repeat_rise"])
        for ax, (key, label, scale), margin in zip(axes[1], COHERENCE_PANELS, margins):
            _draw_panel(ax, steer, key, scale, drawn)
            ax.axhline(margin, color=BROKE, linestyle=":", linewidth=1.0)
            ax.set_ylabel(label.format(n=rule["ngram"]))
    handles = [Line2D([], [], color=EMOTION_COLORS[e], marker=EMOTION_MARKERS[e], label=e) for e in drawn]
    handles.append(Line2D([], [], color="#4D4D4D", linestyle="--", label="random neurons, same per-layer counts"))
    if rule:
        handles += [Line2D([], [], linestyle="none", marker="o", markersize=8, markerfacecolor="none", color=BROKE,
                           label="text broke (replies' coherence\npast a dotted margin)"),
                    Line2D([], [], color=BROKE, linestyle=":", label="text-broke margin")]
    if not drawn:
        axes[0][0].text(0.5, 0.5, "no emotion has selected neurons", ha="center", va="center", transform=axes[0][0].transAxes)
    figure.legend(handles=handles, loc="outside right center", fontsize=8)
    # Said once under both panels: as each panel's own label it ran into the other panel's and
    # past the figure's left edge (constrained layout does not shorten a label wider than its axes).
    figure.supxlabel("alpha scales the neurons' activation: 1 = unmodified, 0 = masked", fontsize=9)
    figure.suptitle(f"Steering {steer.model}: {len(steer.prompts)} neutral prompts, greedy replies", fontsize=10)
    return figure


def save_steering_figure(steer: SteerFile, directory: str | Path, name: str = "steering") -> tuple[Path, Path]:
    """Write `name`.png and `name`.svg (no dates, fixed SVG ids: an unchanged figure is byte-identical)."""
    return save_figure(steering_figure(steer), directory, name)
