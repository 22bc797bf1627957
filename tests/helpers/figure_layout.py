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
