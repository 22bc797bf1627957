"""Accuracy changes against unmodified, one row per condition and emotion, and the rows of the
ratio sweep (Figure 3) and the layer-range sweep (Figure 4)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from emoneurons.emotions import EMOTIONS
from emoneurons.io.eval_file import CONTROL_CONDITION_KIND, EvalCondition, EvalFile
from emoneurons.params import same_ratio
from emoneurons.report.results.accuracy import accuracy_of, control_mean
from emoneurons.report.style import LAYER_RANGES


def accuracy_changes(eval_json: EvalFile) -> list[dict[str, Any]]:
    """Long rows, one per (condition, evaluated emotion): accuracy change in percentage points
    against unmodified, plain masks only (not graded). The controls of the verdict's null kind
    (`eval_json.null`: eval.controls' first) are averaged over their draws (condition "control").

    Row: {"ratio", "layers", "masked", "emotion", "condition": "mask"|"control",
          "accuracy", "accuracy_change"}"""
    base = accuracy_of(eval_json.unmodified())
    control_kind = CONTROL_CONDITION_KIND[eval_json.null]
    groups: dict[tuple, list[EvalCondition]] = {}
    for c in eval_json.conditions:
        if c.kind not in ("mask", control_kind) or c.scale:  # graded masks have their dose-response
            continue
        key = ("mask" if c.kind == "mask" else "control", c.masked, float(c.ratio), c.layers)
        groups.setdefault(key, []).append(c)
    rows = []
    order = {e: i for i, e in enumerate(EMOTIONS)}
    ranges = {r: i for i, r in enumerate(LAYER_RANGES)}
    for kind, masked, ratio, layers in sorted(
        groups, key=lambda k: (order.get(k[1], 99), k[2], ranges.get(k[3], 99), k[0] != "mask")
    ):
        accuracy = control_mean(groups[(kind, masked, ratio, layers)])
        for emotion in EMOTIONS:
            rows.append({
                "ratio": ratio, "layers": layers, "masked": masked, "emotion": emotion,
                "condition": kind, "accuracy": accuracy[emotion],
                "accuracy_change": 100.0 * (accuracy[emotion] - base[emotion]),
            })
    return rows


def rows_matching(rows: Iterable[Mapping[str, Any]], **match: Any) -> list[Mapping[str, Any]]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def ratio_sweep(changes: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows of Figure 3: all layers masked, every ratio."""
    return [r for r in changes if r["layers"] == "all"]


def layer_sweep_ratio(changes: Sequence[Mapping[str, Any]], top_rate: float) -> float | None:
    """The ratio the layer-range conditions were run at: `top_rate` when it has them, else the
    smallest ratio that has a range other than all."""
    partial = sorted({r["ratio"] for r in changes if r["layers"] != "all"})
    if not partial:
        return top_rate if any(same_ratio(r["ratio"], top_rate) for r in changes) else None
    return top_rate if any(same_ratio(p, top_rate) for p in partial) else partial[0]


def layer_sweep(changes: Sequence[Mapping[str, Any]], ratio: float | None) -> list[Mapping[str, Any]]:
    """The rows of Figure 4: every layer range at one ratio."""
    if ratio is None:
        return []
    return [r for r in changes if same_ratio(r["ratio"], ratio)]
