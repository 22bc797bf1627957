"""Each emotion's selected neurons as neurons.json holds them (io/neurons_file.py): the neurons per
layer at a ratio, each emotion's set as a tensor and the overlap of two sets (Figure 14)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.report.errors import ReportDataError

OVERLAP_DEFINITION = "|A∩B| / |A∪B| (Jaccard index of the two neuron sets)"


def per_layer_counts(neurons: NeuronsFile, ratio: float) -> dict[str, list[int]]:
    """Emotion neurons per layer per emotion at one ratio (paper order, zeros where absent)."""
    per_layer = neurons.selection(ratio).per_layer or {}
    counts = {}
    for emotion in EMOTIONS:
        row = [int(n) for n in per_layer.get(emotion, [0] * neurons.layers)]
        if len(row) != neurons.layers:
            raise ReportDataError(
                f"{neurons.source}: per_layer.{emotion} has {len(row)} entries, expected {neurons.layers}"
            )
        counts[emotion] = row
    return counts


def overlap_of(neurons: NeuronsFile, ratio: float) -> torch.Tensor:
    membership = neuron_membership(neurons.selection(ratio).neurons, neurons.layers, neurons.neurons_per_layer)
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
