"""The look every figure shares, and how each is saved (PNG and SVG, byte-identical when unchanged): one fixed colour per emotion (paper order), and the neutral colours
of the conditions that are not an emotion (unmodified, random-neuron control, chance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import matplotlib
from matplotlib.figure import Figure

from emoneurons.emotions import EMOTIONS
from emoneurons.io.atomic import atomic_path
from emoneurons.params import LayerRange

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies and in greyscale print.
EMOTION_COLORS: dict[str, str] = {
    "anger": "#D55E00",  # vermillion
    "disgust": "#009E73",  # bluish green
    "fear": "#CC79A7",  # reddish purple
    "happiness": "#E69F00",  # orange
    "sadness": "#0072B2",  # blue
    "surprise": "#56B4E9",  # sky blue
}
assert tuple(EMOTION_COLORS) == EMOTIONS

# Markers tell lines apart where they coincide (and in greyscale).
EMOTION_MARKERS: dict[str, str] = {
    "anger": "o", "disgust": "s", "fear": "^", "happiness": "D", "sadness": "v", "surprise": "P",
}

UNMODIFIED_COLOR = "#4D4D4D"
CONTROL_COLOR = "#A6A6A6"
CHANCE_COLOR = "#7F7F7F"
CONTROL_HATCH = "///"

# Runs overlaid by `emoneurons compare` keep the emotion colours and differ by line style / hatch.
RUN_LINESTYLES: tuple[str, ...] = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
RUN_MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P")
RUN_HATCHES: tuple[str, ...] = ("", "..", "xx", "\\\\", "oo", "--")

LAYER_RANGES: tuple[str, ...] = get_args(LayerRange)
LAYER_RANGE_LABELS: dict[str, str] = {
    "bottom": "Bottom\n(first third)",
    "middle": "Middle\n(second third)",
    "top": "Top\n(last third)",
    "all": "All layers",
}

DPI = 150
PANEL_GRID = (2, 3)  # six panels, one per emotion, in paper order row by row


def emotion_color(emotion: str) -> str:
    return EMOTION_COLORS[emotion]


def run_style(index: int) -> dict[str, object]:
    """Line style and marker of the index-th run in a comparison (cycles after six runs)."""
    return {
        "linestyle": RUN_LINESTYLES[index % len(RUN_LINESTYLES)],
        "marker": RUN_MARKERS[index % len(RUN_MARKERS)],
    }


def run_hatch(index: int) -> str:
    return RUN_HATCHES[index % len(RUN_HATCHES)]


def save_figure(figure: Figure, directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write `name`.png and `name`.svg into `directory`, each atomically; return both paths."""
    directory = Path(directory)
    paths = (directory / f"{name}.png", directory / f"{name}.svg")
    for path, fmt in zip(paths, ("png", "svg")):
        # A fixed salt for the SVG's element ids: matplotlib salts them with a random uuid, so
        # an unchanged figure would differ on every run and DVC would see a change.
        with atomic_path(path) as tmp, matplotlib.rc_context({"svg.hashsalt": f"emoneurons:{name}"}):
            figure.savefig(tmp, format=fmt, dpi=DPI, metadata=_metadata(fmt))
    return paths


def _metadata(fmt: str) -> dict[str, Any]:
    # No creation date, so an unchanged figure is byte-identical and DVC does not see a change.
    return {"Date": None} if fmt == "svg" else {"Software": None}
