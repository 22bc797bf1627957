"""The numbers experiments are compared by: headline.json (per emotion: unmodified and masked
accuracy, the drop and the control's) and, from it, the handful `dvc exp show` lists per experiment
(reports/metrics/summary.json, the pipeline's only `metrics` file). Every other number stays in
files that dvc.yaml declares as plain `cache: false` outputs (headline.json, eval.json, the stages'
records), so the table of a sweep fits a 120-column terminal."""

from __future__ import annotations

from collections.abc import Mapping

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.conditions import control_id, mask_id
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.params import ControlKind


def headline(conditions: Mapping[str, dict], top_rate: float, control_draws: int,
             control_kind: ControlKind) -> dict[str, float]:
    """headline.json (docs/CONTRACTS.md): per emotion the unmodified and the masked accuracy (its own
    neurons at `top_rate`, all layers), the drop and the mean drop of its `control_kind` draws (the
    verdict's null: eval.controls' first kind)."""
    base = conditions["unmodified"]["accuracy"]
    out = {"accuracy_unmodified": base["overall"]}
    out |= {f"accuracy_unmodified_{e}": base[e] for e in EMOTIONS}
    for e in EMOTIONS:
        cid = mask_id(e, top_rate, "all")
        masked = conditions[cid]["accuracy"][e]
        out[f"accuracy_masked_{e}"] = masked
        out[f"drop_{e}"] = round(base[e] - masked, 4)
        if control_draws:
            drops = [base[e] - conditions[control_id(cid, d, control_kind)]["accuracy"][e] for d in range(control_draws)]
            out[f"control_drop_{e}"] = round(sum(drops) / len(drops), 4)
    return out


def exp_summary(headline: Mapping[str, float], neurons: NeuronsFile, top_rate: float) -> dict[str, float | int]:
    """accuracy: the unmodified model's test accuracy; drop: the masked emotion's accuracy drop
    (its own neurons at `top_rate`, all layers), mean over the six emotions; control_drop: the same
    for random neurons (absent without controls); neurons: how many select chose at `top_rate`."""
    summary: dict[str, float | int] = {
        "accuracy": headline["accuracy_unmodified"],
        "drop": round(sum(headline[f"drop_{e}"] for e in EMOTIONS) / len(EMOTIONS), 4),
    }
    controls = [headline[f"control_drop_{e}"] for e in EMOTIONS if f"control_drop_{e}" in headline]
    if controls:
        summary["control_drop"] = round(sum(controls) / len(controls), 4)
    summary["neurons"] = neurons.selection(top_rate).selected
    return summary
