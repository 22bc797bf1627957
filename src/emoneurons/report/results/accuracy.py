"""eval.json's accuracies as each figure and table shows them (docs/CONTRACTS.md): a condition's
accuracy and 95% CI per emotion, the baseline against chance, the control draws' mean and what
Figure 2 draws."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from emoneurons.emotions import EMOTIONS
from emoneurons.io.eval_file import CONTROL_CONDITION_KIND, EvalCondition, EvalFile


def as_percent(value: float) -> float:
    return 100.0 * value


def number_or_nan(value: Any) -> float:
    """A JSON number, null read as NaN."""
    return math.nan if value is None else float(value)


def accuracy_of(condition: EvalCondition) -> dict[str, float]:
    accuracy = condition.accuracy
    return {key: number_or_nan(accuracy.get(key)) for key in (*EMOTIONS, "overall")}


def ci_of(condition: EvalCondition) -> dict[str, tuple[float, float]]:
    ci = condition.ci95
    out = {}
    for key in (*EMOTIONS, "overall"):
        low, high = ci.get(key) or (None, None)
        out[key] = (number_or_nan(low), number_or_nan(high))
    return out


def baseline_clear(eval_json: EvalFile) -> tuple[bool, float, float, float]:
    """(clearly above chance, overall accuracy, lower 95% bound, chance): clear when the lower
    bound of the exact (Clopper-Pearson) CI is above chance."""
    base = eval_json.unmodified()
    accuracy = accuracy_of(base)["overall"]
    low, _ = ci_of(base)["overall"]
    chance = float(eval_json.chance or 1 / len(EMOTIONS))
    return (not math.isnan(low) and low > chance), accuracy, low, chance


def _mean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def control_mean(controls: Sequence[EvalCondition]) -> dict[str, float]:
    """Accuracy per emotion averaged over the control draws (NaN when there are none)."""
    accuracies = [accuracy_of(c) for c in controls]
    return {key: _mean(a[key] for a in accuracies) for key in (*EMOTIONS, "overall")}


def rq2_view(eval_json: EvalFile, ratio: float) -> dict[str, Any]:
    """What Figure 2 draws: unmodified, each emotion's neurons masked (all layers, `ratio`), and the
    random-neuron control of each (the verdict's null kind); masked/control hold only the emotions
    that were evaluated.

    {"unmodified": {"accuracy": {e: a}, "ci95": {e: (lo, hi)}},
     "masked": {m: {"accuracy": ..., "ci95": ...}}, "control": {m: {e: mean accuracy}},
     "control_draws": {m: n}, "n_per_emotion": {e: n}, "chance": c, "ratio": ratio}"""
    base = eval_json.unmodified()
    view: dict[str, Any] = {
        "unmodified": {"accuracy": accuracy_of(base), "ci95": ci_of(base)},
        "masked": {}, "control": {}, "control_draws": {},
        "n_per_emotion": dict(eval_json.n_per_emotion or {}),
        "chance": float(eval_json.chance or 1 / len(EMOTIONS)),
        "ratio": ratio,
    }
    for emotion in EMOTIONS:
        masked = eval_json.find("mask", emotion, ratio, "all")
        if masked:
            view["masked"][emotion] = {"accuracy": accuracy_of(masked[0]), "ci95": ci_of(masked[0])}
        controls = eval_json.find(CONTROL_CONDITION_KIND[eval_json.null], emotion, ratio, "all")
        if controls:
            view["control"][emotion] = control_mean(controls)
            view["control_draws"][emotion] = len(controls)
    return view
