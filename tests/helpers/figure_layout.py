"""What the figure tests share: every drawn text's outline from matplotlib's own renderer, the
layout faults (text off the canvas, texts overlapping), and a steer.json of the default's shape."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.coherence import CoherenceRule, ReplyCoherence
from emoneurons.evaluate.steering import plan_steering, steering_record
from emoneurons.io.neurons_file import parse_neurons
from helpers.repo_params import section
from helpers.synthetic_inputs import neurons_json

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
SLACK = 0.5  # pixels: boxes that merely touch are not overlapping


def text_outlines(figure: Figure) -> list[tuple[str, list[tuple[float, float]]]]:
    """(text, its outline: the four corners in display pixels, rotated with the text) of every
    non-empty text that drawing `figure` actually draws (tick labels beyond the view limits exist
    but are not drawn)."""
    drawn: list[tuple[str, list[tuple[float, float]]]] = []
    draw = Text.draw

    def recording_draw(text: Text, renderer) -> None:
        draw(text, renderer)
        if not (text.get_visible() and text.get_text().strip()):
            return
        box = text.get_window_extent(renderer)  # axis-aligned around the rotated text
        angle = math.radians(text.get_rotation())
        rotation = text.get_rotation()
        text.set_rotation(0)
        upright = text.get_window_extent(renderer)
        text.set_rotation(rotation)
        c, s = math.cos(angle), math.sin(angle)
        corners = [(x * c - y * s, x * s + y * c) for x, y in ((0, 0), (upright.width, 0), (upright.width, upright.height), (0, upright.height))]
        dx, dy = box.x0 - min(x for x, _ in corners), box.y0 - min(y for _, y in corners)
        drawn.append((text.get_text(), [(x + dx, y + dy) for x, y in corners]))

    canvas = FigureCanvasAgg(figure)  # what savefig draws the PNG with (the figures are made at its dpi)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Text, "draw", recording_draw)
        canvas.draw()
    return drawn


def overlap_depth(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """How far two convex outlines overlap (pixels; <= 0: apart): the least overlap of their
    projections over each edge's normal (separating axis theorem)."""
    depth = math.inf
    for outline in (a, b):
        for (x0, y0), (x1, y1) in zip(outline, outline[1:] + outline[:1]):
            length = math.hypot(x1 - x0, y1 - y0) or 1.0
            nx, ny = (y0 - y1) / length, (x1 - x0) / length
            pa = [x * nx + y * ny for x, y in a]
            pb = [x * nx + y * ny for x, y in b]
            depth = min(depth, min(max(pa), max(pb)) - max(min(pa), min(pb)))
    return depth


def layout_faults(figure: Figure) -> list[str]:
    """Each text that leaves the canvas, and each pair of texts that overlap."""
    outlines = text_outlines(figure)
    width, height = figure.canvas.get_width_height()
    faults = []
    for text, outline in outlines:
        xs, ys = [x for x, _ in outline], [y for _, y in outline]
        if min(xs) < -SLACK or min(ys) < -SLACK or max(xs) > width + SLACK or max(ys) > height + SLACK:
            faults.append(f"{text!r} leaves the canvas (x {min(xs):.0f}..{max(xs):.0f}, y {min(ys):.0f}..{max(ys):.0f} "
                          f"of {width}x{height})")
    for (a, outline_a), (b, outline_b) in itertools.combinations(outlines, 2):
        depth = overlap_depth(outline_a, outline_b)
        if depth > SLACK:
            faults.append(f"{a!r} overlaps {b!r} (by {depth:.0f} px)")
    return faults


def steer_json() -> dict:
    """A steer.json of the default's shape: five emotions steered at three alphas, one control draw."""
    selected = {e: [[i % 4, 3 * i], [3, 10 + i]] for i, e in enumerate(EMOTIONS)}
    selected["fear"] = []
    plan = plan_steering(parse_neurons(neurons_json({0.01: selected}, 4, 64)), 0.01, section("steer", alphas=(0, 4, 8), control_draws=1))
    prompts = [f"prompt {i}" for i in range(30)]
    n = len(prompts) * (1 + len(plan))
    gen = torch.Generator().manual_seed(0)
    predicted = [EMOTIONS[int(i)] for i in torch.randint(6, (n,), generator=gen)]
    logp = torch.log_softmax(torch.randn(n, 6, generator=gen), dim=1)
    # Coherence as in a run: log-likelihoods per token near -1 unmodified, 3 to 5 below at alpha 8
    # (text broke: ringed in the top row), repeated shares up to 0.8.
    alphas = [1.0 for _ in prompts] + [float(c.alpha) for c in plan for _ in prompts]
    coherence = ReplyCoherence([-1 - 0.4 * a * (0.5 + float(torch.rand(1, generator=gen))) for a in alphas],
                               (0.8 * torch.rand(n, generator=gen) ** 3).tolist())
    rule = CoherenceRule(ngram=2, logp_drop=2.0, repeat_rise=0.2)
    record = steering_record(prompts, plan, predicted, logp, ["reply"] * n, {e: len(v) for e, v in selected.items()},
                             coherence=coherence, rule=rule)
    return {"model": MODEL, "top_rate": 0.01, "alphas": [0, 4, 8], "max_new_tokens": 16, "control_draws": 1,
            "prompts": prompts, "classifier": {"method": "score", "shots": 1, "label_format": "space", "calibrate": "train_prior"},
            "judges": [], **record}


def rendered_pixels(figure: Figure):
    """The figure drawn as savefig draws it (Agg, its dpi): an RGB array, row 0 at the top."""
    import numpy as np

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def colour_share(pixels, ax, x0: float, x1: float, y: float, colour: str, rows: int = 2) -> float:
    """The share of the pixels of `colour` (within a few levels, for antialiasing) in the strip from
    data x0 to x1 at data height y, `rows` pixels above and below it: a bar drawn there shows."""
    import numpy as np
    from matplotlib.colors import to_rgb

    (left, height), (right, _) = ax.transData.transform([(x0, y), (x1, y)])
    top = pixels.shape[0] - height  # display y counts from the bottom, rows from the top
    strip = pixels[max(round(top) - rows, 0) : round(top) + rows + 1, max(round(left), 0) : round(right) + 1].astype(int)
    target = np.array([round(255 * c) for c in to_rgb(colour)])
    return float((np.abs(strip - target).max(axis=-1) <= 12).mean()) if strip.size else 0.0


def marker_clashes(ax, skip_gids: tuple[str, ...] = ()) -> list[str]:
    """Each pair of markers of two different lines whose centres lie closer than the larger one's
    half size (in display pixels): the one drawn later hides the other. Error-bar caps (| and _)
    and lines with a gid in `skip_gids` are left out."""
    points = []
    for k, line in enumerate(ax.get_lines()):
        if str(line.get_marker()) in ("None", "", " ", "_", "|") or line.get_gid() in skip_gids:
            continue
        size = line.get_markersize() * ax.figure.dpi / 72
        points += [(k, line.get_label(), (x, y), size) for x, y in ax.transData.transform(line.get_xydata())]
    return [f"{a[1]} at {a[2]} hides {b[1]} at {b[2]}" for a, b in itertools.combinations(points, 2)
            if a[0] != b[0] and math.dist(a[2], b[2]) < max(a[3], b[3]) / 2]
