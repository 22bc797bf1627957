"""The handful of numbers `dvc exp show` lists per experiment (reports/metrics/summary.json, the
pipeline's only `metrics` file). Every other number stays in files that dvc.yaml declares as plain
`cache: false` outputs (headline.json, eval.json, the stages' records), so the table of a sweep
fits a 120-column terminal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emoneurons.emotions import EMOTIONS
from emoneurons.io.neurons_file import selection_at


def exp_summary(headline: Mapping[str, float], neurons: Mapping[str, Any], top_rate: float) -> dict[str, float | int]:
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
    summary["neurons"] = int(selection_at(neurons, top_rate)["selected"])
    return summary
