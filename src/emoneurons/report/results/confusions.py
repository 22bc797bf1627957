"""Where a masked emotion's test dialogues go (Figure 15): eval.json's confusion matrices of the
conditions that mask each emotion, the failures they count and how those failures spread over the
other emotions. Tensors out."""

from __future__ import annotations

import math

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.io.eval_file import EvalCondition, EvalFile
from emoneurons.report.errors import ReportDataError


def masked_confusions(eval_json: EvalFile, ratio: float) -> tuple[torch.Tensor, list[bool]]:
    """Int [6, 6, 6]: confusion of the condition masking each emotion (all layers, `ratio`), and
    which emotions had such a condition (zeros where not)."""
    size = len(EMOTIONS)
    out = torch.zeros(size, size, size, dtype=torch.long)
    evaluated = []
    for m, emotion in enumerate(EMOTIONS):
        found = eval_json.find("mask", emotion, ratio, "all")
        evaluated.append(bool(found))
        if found:
            out[m] = confusion_of(found[0])
    return out, evaluated


def confusion_of(condition: EvalCondition) -> torch.Tensor:
    matrix = torch.tensor(condition.confusion or [], dtype=torch.long)
    if matrix.shape != (len(EMOTIONS), len(EMOTIONS)):
        raise ReportDataError(
            f"eval.json: condition {condition.id!r}: confusion has shape "
            f"{tuple(matrix.shape)}, expected 6 x 6"
        )
    return matrix


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
