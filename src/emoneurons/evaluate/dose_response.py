"""Graded masking (eval.scales): does an emotion's effect grow with how hard its neurons are masked?

Each RQ2 mask (the emotion's neurons at select.top_rate, all layers) and its controls also run with
the neurons' activations multiplied by each factor of eval.scales instead of zeroed (conditions.py
plans them; the engine multiplies the down_proj inputs). eval.json's `dose_response` gives per
emotion, at every factor (0, the plain mask, first), the mean test effect of the mask and of its
controls of the verdict's null kind (mean over the draws), and whether the mask's effect is
monotone in the factor (stats/effects.py: monotone_steps, with the unmodified model as factor 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.conditions import control_id, mask_id
from emoneurons.params import EvalParams
from emoneurons.stats.effects import monotone_steps


def dose_response_record(conditions: Mapping[str, Mapping], eval_params: EvalParams, top_rate: float,
                         test_effect: str) -> dict | None:
    """eval.json's `dose_response` from the conditions as eval.json lists them, by id (None when
    eval.scales asks for no graded mask). `test_effect`: the effect key the verdicts use
    (`delta_masked` or `masked_answer`)."""
    if not any(eval_params.scales):
        return None
    scales = sorted({0.0, *eval_params.scales})

    def mean(cid: str) -> float | None:
        return conditions[cid]["effect"][test_effect]["mean"]

    null = eval_params.controls[0]
    emotions = {}
    for emotion in EMOTIONS:
        masks = [mask_id(emotion, top_rate, "all", scale) for scale in scales]
        effects = [mean(cid) for cid in masks]
        control: list[float | None] = []
        for cid in masks:
            draws = [v for d in range(eval_params.control_draws) if (v := mean(control_id(cid, d, null))) is not None]
            control.append(round(sum(draws) / len(draws), 6) if draws else None)
        record = {"n_neurons": conditions[masks[0]]["n_neurons"], "mask": effects, "control": control}
        if conditions[masks[0]]["n_neurons"] and all(v is not None for v in effects):
            record |= monotone_steps(scales, _numbers(effects))
        else:
            record |= {"monotone": None, "reversals": None}
        emotions[emotion] = record
    return {"scales": scales, "effect": test_effect, "control_kind": null, "emotions": emotions,
            "rule": "mask, control: the mean test effect over the test dialogues at each factor (0: zeroed), the "
                    "control's averaged over its draws; monotone: with factor 1 = the unmodified model (effect 0), "
                    "no step between neighbouring factors moves against the direction from the smallest factor to 1 "
                    "(reversals: the steps that do)"}


def _numbers(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None]
