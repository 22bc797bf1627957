"""Each emotion's selected neurons as neurons.json holds them (docs/CONTRACTS.md): the selection
ratio, the neurons per layer, each emotion's set as a tensor and the overlap of two sets (Figure 14)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.io.neurons_file import selection_at
from emoneurons.report.errors import ReportDataError

OVERLAP_DEFINITION = "|A∩B| / |A∪B| (Jaccard index of the two neuron sets)"


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


def neuron_membership(
    neurons: Mapping[str, Sequence[Sequence[int]]], layers: int, neurons_per_layer: int
) -> torch.Tensor:
    """Bool [6, layers * neurons_per_layer]: row e marks the neurons selected for emotion e."""
    membership = torch.zeros(len(EMOTIONS), layers * neurons_per_layer, dtype=torch.bool)
    for row, emotion in enumerate(EMOTIONS):
        pairs = torch.tensor(list(neurons.get(emotion, [])), dtype=torch.long).reshape(-1, 2)
        if pairs.numel() == 0:
            continue
        bad = (pairs[:, 0] < 0) | (pairs[:, 0] >= layers) | (pairs[:, 1] < 0) | (
            pairs[:, 1] >= neurons_per_layer
        )
        if bool(bad.any()):
            layer, index = pairs[bad][0].tolist()
            raise ReportDataError(
                f"neurons.{emotion}: neuron [{layer}, {index}] is outside "
                f"{layers} layers x {neurons_per_layer} neurons"
            )
        membership[row, pairs[:, 0] * neurons_per_layer + pairs[:, 1]] = True
    return membership


def overlap_ratio(sets: torch.Tensor) -> torch.Tensor:
    """Float64 [E, E] |A∩B| / |A∪B| between the rows of a bool membership tensor [E, ...].

    Two empty sets have overlap 0 (nothing is shared)."""
    flat = sets.reshape(sets.shape[0], -1).to(torch.float64)
    intersection = flat @ flat.T
    sizes = flat.sum(dim=1)
    union = sizes[:, None] + sizes[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1.0), torch.zeros_like(union))
