"""eval.json's paired effects: each masked condition's effect against its random-neuron controls,
the corrected p-values and the verdict, one row each (the specificity section, Figure 2's and 3's
effect panels, the atlas's verdicts)."""

from __future__ import annotations

import math
from typing import Any

from emoneurons.io.eval_file import EvalFile
from emoneurons.report.results.accuracy import number_or_nan


def _pair(values: Any) -> tuple[float, float]:
    low, high = values if isinstance(values, (list, tuple)) and len(values) == 2 else (None, None)
    return (number_or_nan(low), number_or_nan(high))


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
            "effect": number_or_nan(own.get("mean")), "effect_ci": _pair(own.get("ci95")),
            "control": number_or_nan(tested.get("control_mean")),
            "control_ci": _pair(control_effects[0].get("ci95")) if len(control_effects) == 1 else (math.nan, math.nan),
            "difference": number_or_nan(tested.get("difference")), "difference_ci": _pair(tested.get("difference_ci95")),
            "p": number_or_nan(tested.get("p")), "p_holm": number_or_nan(tested.get("p_holm")), "p_bh": number_or_nan(tested.get("p_bh")),
            "verdict": tested.get("verdict"),
        })
    return rows
