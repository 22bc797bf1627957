"""data/neurons/neurons.json, select's output, in one place: the key a ratio has in its `ratios`,
the record select writes, and the lookup of one ratio's selection with its one error (mask-eval,
cards, steer, plot and compare all read it through here). The shape is in docs/CONTRACTS.md."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emoneurons.io.tables import DataError

NEURONS_FILE = "data/neurons/neurons.json"


class NoSelectionError(DataError):
    """neurons.json has no selection at a ratio a stage needs, said in one line."""


def ratio_key(ratio: float) -> str:
    """The key of a ratio in neurons.json's `ratios`, and in condition ids (0.01 -> "0.01")."""
    return f"{ratio:g}"


def neurons_record(*, top_rate: float, assign: str, layers: int, neurons_per_layer: int,
                   selections: Mapping[float, Mapping[str, Any]]) -> dict[str, Any]:
    """What select writes: its params, the model's shape, and each ratio's selection record."""
    return {
        "top_rate": top_rate,
        "assign": assign,
        "layers": layers,
        "neurons_per_layer": neurons_per_layer,
        "ratios": {ratio_key(ratio): selection for ratio, selection in selections.items()},
    }


def selection_at(neurons_json: Mapping[str, Any], ratio: float, source: str = NEURONS_FILE) -> Mapping[str, Any]:
    """The selection at `ratio` ({"neurons": {emotion: [[layer, index], ...]}, "selected", ...});
    NoSelectionError naming the ratios there when select did not select at it."""
    ratios = neurons_json.get("ratios") or {}
    key = ratio_key(ratio)
    if key not in ratios:
        have = ", ".join(sorted(ratios)) or "none"
        raise NoSelectionError(f"{source}: no selection at ratio {key} (has: {have}); "
                               "rerun select (it selects at select.top_rate and each of eval.ratios)")
    return ratios[key]


def selected_per_emotion(neurons_json: Mapping[str, Any], ratio: float) -> dict[str, int]:
    """How many neurons each emotion has in the selection at `ratio` (emotions without any left out)."""
    return {emotion: len(pairs) for emotion, pairs in selection_at(neurons_json, ratio)["neurons"].items()}
