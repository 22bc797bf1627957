"""Tensor analysis behind Figures 14 and 15: each emotion's neuron set, the overlap of two sets,
and where a masked emotion's misclassified dialogues go. Tensors in, tensors out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.report.errors import ReportDataError


OVERLAP_DEFINITION = "|A∩B| / |A∪B| (Jaccard index of the two neuron sets)"


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


def failure_counts(confusions: torch.Tensor) -> torch.Tensor:
    """Int [E]: failures of emotion m's test dialogues when m's neurons are masked.

    `confusions[m]` is the confusion matrix (rows true, columns predicted) of the condition that
    masks emotion m."""
    rows = torch.diagonal(confusions, dim1=0, dim2=1).T  # rows[m] = confusions[m, m, :]
    return rows.sum(dim=1) - torch.diagonal(rows)


def failure_distribution(confusions: torch.Tensor) -> torch.Tensor:
    """Float64 [E, E]: row m = where the misclassified dialogues of emotion m go when m's neurons
    are masked, as shares of those failures (diagonal 0; a row with no failures is all NaN).

    `confusions` is [E, E, E]: `confusions[m]` is the confusion matrix (rows = true emotion,
    columns = predicted) of the condition that masks emotion m."""
    rows = torch.diagonal(confusions, dim1=0, dim2=1).T.to(torch.float64)
    wrong = rows * (1 - torch.eye(rows.shape[0], dtype=torch.float64))
    totals = wrong.sum(dim=1, keepdim=True)
    return torch.where(totals > 0, wrong / totals.clamp_min(1.0), torch.full_like(wrong, math.nan))
