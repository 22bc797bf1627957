"""Views of the metrics files (docs/CONTRACTS.md): neurons.json and eval.json turned into the plain
data each figure, report table and plots file shows (dicts and row lists; tensors for matrices)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.io.eval_file import EvalCondition, EvalFile, same_ratio
from emoneurons.io.neurons_file import selection_at
from emoneurons.report.analysis import neuron_membership, overlap_ratio
from emoneurons.report.errors import ReportDataError
from emoneurons.report.style import LAYER_RANGES


def as_percent(value: float) -> float:
    return 100.0 * value


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def top_rate_of(neurons_json: Mapping[str, Any]) -> float:
    if "top_rate" not in neurons_json:
        raise ReportDataError("neurons.json: top_rate is missing")
    return float(neurons_json["top_rate"])


def per_layer_counts(neurons_json: Mapping[str, Any], ratio: float) -> dict[str, list[int]]:
    """Emotion neurons per layer per emotion at one ratio (paper order, zeros where absent)."""
    selected = selection_at(neurons_json, ratio)
    layers = int(neurons_json["layers"])
    per_layer = selected.get("per_layer") or {}
    counts = {}
    for emotion in EMOTIONS:
        row = [int(n) for n in per_layer.get(emotion, [0] * layers)]
        if len(row) != layers:
            raise ReportDataError(
                f"neurons.json: per_layer.{emotion} has {len(row)} entries, expected {layers}"
            )
        counts[emotion] = row
    return counts


def overlap_of(neurons_json: Mapping[str, Any], ratio: float) -> torch.Tensor:
    selected = selection_at(neurons_json, ratio)
    membership = neuron_membership(
        selected.get("neurons") or {}, int(neurons_json["layers"]),
        int(neurons_json["neurons_per_layer"]),
    )
    return overlap_ratio(membership)


def accuracy_of(condition: EvalCondition) -> dict[str, float]:
    accuracy = condition.accuracy
    return {key: _number(accuracy.get(key)) for key in (*EMOTIONS, "overall")}


def ci_of(condition: EvalCondition) -> dict[str, tuple[float, float]]:
    ci = condition.ci95
    out = {}
    for key in (*EMOTIONS, "overall"):
        low, high = ci.get(key) or (None, None)
        out[key] = (_number(low), _number(high))
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
    random-neuron control of each; masked/control hold only the emotions that were evaluated.

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
        controls = eval_json.find("control", emotion, ratio, "all")
        if controls:
            view["control"][emotion] = control_mean(controls)
            view["control_draws"][emotion] = len(controls)
    return view


def _pair(values: Any) -> tuple[float, float]:
    low, high = values if isinstance(values, (list, tuple)) and len(values) == 2 else (None, None)
    return (_number(low), _number(high))


def effect_rows(eval_json: EvalFile) -> list[dict[str, Any]]:
    """One row per masked condition with a paired effect (eval.json's `effect` / `vs_control`; []
    for runs written before them): the test effect's mean and CI, the controls' (CI of the mean
    over dialogues when there is one draw, NaN otherwise), the corrected p-values and the verdict.

    Row: {"masked", "ratio", "layers", "n_neurons", "effect", "effect_ci", "control",
          "control_ci", "difference", "difference_ci", "p", "p_holm", "p_bh", "verdict"}"""
    summary = eval_json.effects or {}
    key = summary.get("test_effect")
    if not key:
        return []
    rows = []
    for c in eval_json.conditions:
        if c.kind != "mask" or c.vs_control is None:
            continue
        own = (c.effect or {}).get(key) or {}
        tested = c.vs_control
        controls = [d for d in eval_json.conditions if d.id.startswith(f"control{c.id.removeprefix('mask')}-d")]
        control_effects = [((d.effect or {}).get(key) or {}) for d in controls]
        rows.append({
            "masked": c.masked, "ratio": float(c.ratio), "layers": c.layers,
            "n_neurons": c.n_neurons,
            "effect": _number(own.get("mean")), "effect_ci": _pair(own.get("ci95")),
            "control": _number(tested.get("control_mean")),
            "control_ci": _pair(control_effects[0].get("ci95")) if len(control_effects) == 1 else (math.nan, math.nan),
            "difference": _number(tested.get("difference")), "difference_ci": _pair(tested.get("difference_ci95")),
            "p": _number(tested.get("p")), "p_holm": _number(tested.get("p_holm")), "p_bh": _number(tested.get("p_bh")),
            "verdict": tested.get("verdict"),
        })
    return rows


def accuracy_changes(eval_json: EvalFile) -> list[dict[str, Any]]:
    """Long rows, one per (condition, evaluated emotion): accuracy change in percentage points
    against unmodified. Controls are averaged over their draws (condition "control").

    Row: {"ratio", "layers", "masked", "emotion", "condition": "mask"|"control",
          "accuracy", "accuracy_change"}"""
    base = accuracy_of(eval_json.unmodified())
    groups: dict[tuple, list[EvalCondition]] = {}
    for c in eval_json.conditions:
        if c.kind not in ("mask", "control"):
            continue
        key = (c.kind, c.masked, float(c.ratio), c.layers)
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


def masked_confusions(eval_json: EvalFile, ratio: float) -> tuple[torch.Tensor, list[bool]]:
    """Int [6, 6, 6]: confusion of the condition masking each emotion (all layers, `ratio`), and
    which emotions had such a condition (zeros where not)."""
    size = len(EMOTIONS)
    out = torch.zeros(size, size, size, dtype=torch.long)
    evaluated = []
    for m, emotion in enumerate(EMOTIONS):
        found = eval_json.find("mask", emotion, ratio, "all")
        evaluated.append(bool(found))
        if found:
            out[m] = confusion_of(found[0])
    return out, evaluated


def confusion_of(condition: EvalCondition) -> torch.Tensor:
    matrix = torch.tensor(condition.confusion or [], dtype=torch.long)
    if matrix.shape != (len(EMOTIONS), len(EMOTIONS)):
        raise ReportDataError(
            f"eval.json: condition {condition.id!r}: confusion has shape "
            f"{tuple(matrix.shape)}, expected 6 x 6"
        )
    return matrix
