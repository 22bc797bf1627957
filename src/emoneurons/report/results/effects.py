"""eval.json's paired effects: each masked condition's effect against its random-neuron controls
of each kind, the corrected p-values and the verdicts, one row each (the specificity section,
Figure 2's and 3's effect panels, the atlas's verdicts); the draw-level null and graded masking's
dose-response, one row each."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from emoneurons.io.eval_file import CONTROL_CONDITION_KIND, EvalFile
from emoneurons.report.results.accuracy import number_or_nan
from emoneurons.stats.effects import SPECIFIC


def _pair(values: Any) -> tuple[float, float]:
    low, high = values if isinstance(values, (list, tuple)) and len(values) == 2 else (None, None)
    return (number_or_nan(low), number_or_nan(high))


def effect_rows(eval_json: EvalFile, kind: str | None = None) -> list[dict[str, Any]]:
    """One row per plain masked condition with a paired effect (eval.json's `effect` and its test
    against controls of `kind`, None: the verdict's null, `effects.null`; [] for runs written
    before the effects): the test effect's mean and CI, the controls' (CI of the mean over
    dialogues when there is one draw, NaN otherwise), the corrected p-values and the verdict, and
    the verdict against every kind the run tested.

    Row: {"masked", "ratio", "layers", "n_neurons", "null", "effect", "effect_ci", "control",
          "control_ci", "difference", "difference_ci", "p", "p_holm", "p_bh", "verdict",
          "verdicts": {kind: verdict}}"""
    summary = eval_json.effects or {}
    key = summary.get("test_effect")
    kind = kind or eval_json.null
    if not key:
        return []
    prefix = CONTROL_CONDITION_KIND[kind]
    rows = []
    for c in eval_json.conditions:
        if c.kind != "mask" or c.scale or c.versus(kind) is None:
            continue
        own = (c.effect or {}).get(key) or {}
        tested = c.versus(kind)
        controls = [d for d in eval_json.conditions if d.kind == prefix and d.id.startswith(f"{prefix}{c.id.removeprefix('mask')}-d")]
        control_effects = [((d.effect or {}).get(key) or {}) for d in controls]
        rows.append({
            "masked": c.masked, "ratio": float(c.ratio), "layers": c.layers,
            "n_neurons": c.n_neurons, "null": kind,
            "effect": number_or_nan(own.get("mean")), "effect_ci": _pair(own.get("ci95")),
            "control": number_or_nan(tested.get("control_mean")),
            "control_ci": _pair(control_effects[0].get("ci95")) if len(control_effects) == 1 else (math.nan, math.nan),
            "difference": number_or_nan(tested.get("difference")), "difference_ci": _pair(tested.get("difference_ci95")),
            "p": number_or_nan(tested.get("p")), "p_holm": number_or_nan(tested.get("p_holm")), "p_bh": number_or_nan(tested.get("p_bh")),
            "verdict": tested.get("verdict"),
            "verdicts": {k: (c.versus(k) or {}).get("verdict") for k in eval_json.control_kinds if c.versus(k) is not None},
        })
    return rows


SURVIVES_MATCHING = "yes"
LOST_TO_MATCHING = "no: specific against uniform controls only"
ONLY_MATCHED = "specific against matched controls only"
NEITHER = "not specific against either"


def survives_matching(verdicts: Mapping[str, str | None]) -> str:
    """Does 'specific' survive activity matching? From a condition's verdicts by control kind."""
    matched, uniform = verdicts.get("matched"), verdicts.get("uniform")
    if matched is None or uniform is None:
        return "n/a (the run tested one control kind)"
    if matched == SPECIFIC:
        return SURVIVES_MATCHING if uniform == SPECIFIC else ONLY_MATCHED
    return LOST_TO_MATCHING if uniform == SPECIFIC else NEITHER


def draw_null_rows(eval_json: EvalFile) -> list[dict[str, Any]]:
    """eval.json's draw-level null, one row per masked condition it covers ([] when the run has
    none): the set's mean effect, the draws' mean, sd, min and max, its rank among them, both
    p-values with their Holm p and verdicts.

    Row: {"id", "masked", "ratio", "layers", "kind", "draws", "effect", "draws_mean", "draws_sd",
          "draws_min", "draws_max", "draw_values", "rank", "p", "p_holm", "verdict", "p_normal", "p_normal_holm",
          "verdict_normal"}"""
    record = eval_json.draw_null or {}
    rows = []
    for cid, entry in (record.get("conditions") or {}).items():
        condition = eval_json.condition(cid)
        draws = [number_or_nan(v) for v in entry.get("draws") or []]
        rows.append({
            "id": cid, "masked": condition.masked, "ratio": condition.ratio, "layers": condition.layers,
            "kind": record.get("kind"), "draws": len(draws), "effect": number_or_nan(entry.get("effect")),
            "draws_mean": number_or_nan(entry.get("draws_mean")), "draws_sd": number_or_nan(entry.get("draws_sd")),
            "draws_min": min(draws, default=math.nan), "draws_max": max(draws, default=math.nan),
            "draw_values": draws, "rank": entry.get("rank"), **{k: number_or_nan(entry.get(k)) for k in ("p", "p_holm", "p_normal", "p_normal_holm")},
            "verdict": entry.get("verdict"), "verdict_normal": entry.get("verdict_normal"),
        })
    return rows


def dose_rows(eval_json: EvalFile) -> list[dict[str, Any]]:
    """eval.json's graded masking, one row per emotion ([] when the run has none).

    Row: {"emotion", "n_neurons", "scales", "mask", "control", "kind", "monotone", "reversals"}
    (`mask`, `control`: the mean test effect at each factor of `scales`, NaN where missing)."""
    record = eval_json.dose_response or {}
    scales = [float(s) for s in record.get("scales") or []]
    return [{"emotion": emotion, "n_neurons": entry.get("n_neurons"), "scales": scales,
             "mask": [number_or_nan(v) for v in entry.get("mask") or []],
             "control": [number_or_nan(v) for v in entry.get("control") or []],
             "kind": record.get("control_kind"), "monotone": entry.get("monotone"), "reversals": entry.get("reversals")}
            for emotion, entry in (record.get("emotions") or {}).items()]
