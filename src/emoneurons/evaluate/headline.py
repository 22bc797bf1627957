"""headline.json: the few numbers `dvc exp show` compares."""

from __future__ import annotations

from collections.abc import Mapping

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.conditions import control_id, mask_id


def headline(conditions: Mapping[str, dict], top_rate: float, control_draws: int) -> dict[str, float]:
    """The few numbers `dvc exp show` compares (docs/CONTRACTS.md)."""
    base = conditions["unmodified"]["accuracy"]
    out = {"accuracy_unmodified": base["overall"]}
    out |= {f"accuracy_unmodified_{e}": base[e] for e in EMOTIONS}
    for e in EMOTIONS:
        cid = mask_id(e, top_rate, "all")
        masked = conditions[cid]["accuracy"][e]
        out[f"accuracy_masked_{e}"] = masked
        out[f"drop_{e}"] = round(base[e] - masked, 4)
        if control_draws:
            drops = [base[e] - conditions[control_id(cid, d)]["accuracy"][e] for d in range(control_draws)]
            out[f"control_drop_{e}"] = round(sum(drops) / len(drops), 4)
    return out
