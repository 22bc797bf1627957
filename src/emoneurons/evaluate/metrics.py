"""Accuracy, confusion and bootstrap intervals over the six emotions (EMOTIONS order).

`true_idx` / `pred_idx` are LongTensors of emotion indices; a prediction of -1 is an unparseable
answer: wrong in accuracy, absent from the confusion matrix, counted separately.
"""

from __future__ import annotations

import torch
from torch import Tensor

from emoneurons.emotions import EMOTIONS

K = len(EMOTIONS)
CHANCE = 1 / K
UNPARSEABLE = -1


def confusion_matrix(true_idx: Tensor, pred_idx: Tensor) -> Tensor:
    """[6, 6] counts: rows true emotion, columns predicted; unparseable (-1) predictions left out."""
    parsed = pred_idx >= 0
    flat = true_idx[parsed] * K + pred_idx[parsed]
    return torch.bincount(flat, minlength=K * K).reshape(K, K)


def unparseable_counts(true_idx: Tensor, pred_idx: Tensor) -> Tensor:
    """[6] unparseable answers per true emotion."""
    return torch.bincount(true_idx[pred_idx < 0], minlength=K)


def accuracy_per_emotion(confusion: Tensor, n_per_emotion: Tensor) -> Tensor:
    """[6] correct / all dialogues of the emotion (unparseable ones count as wrong); NaN for none."""
    n = n_per_emotion.to(torch.float64)
    return torch.where(n > 0, confusion.diagonal().to(torch.float64) / n.clamp(min=1), torch.nan)


def overall_accuracy(confusion: Tensor, n_per_emotion: Tensor) -> float:
    return float(confusion.diagonal().sum()) / max(int(n_per_emotion.sum()), 1)


def bootstrap_ci(
    correct: Tensor, true_idx: Tensor, n_resamples: int, seed: int, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of accuracy per emotion and overall, resampling dialogues
    with replacement within each emotion (so every resample keeps the test split's strata)."""
    generator = torch.Generator().manual_seed(seed)
    correct = correct.to(torch.float64).cpu()
    true_idx = true_idx.cpu()
    low, high = (1 - level) / 2, 1 - (1 - level) / 2
    hits = torch.zeros(max(n_resamples, 1), dtype=torch.float64)
    intervals: dict[str, tuple[float, float]] = {}
    for e, emotion in enumerate(EMOTIONS):
        members = correct[true_idx == e]
        if members.numel() == 0:
            intervals[emotion] = (float("nan"), float("nan"))
            continue
        if n_resamples == 0:  # no resampling asked for: the point estimate, zero width
            draws = members.unsqueeze(0)
        else:
            draws = members[torch.randint(members.numel(), (n_resamples, members.numel()), generator=generator)]
        sums = draws.sum(dim=1)
        hits += sums
        quantiles = torch.quantile(sums / members.numel(), torch.tensor([low, high], dtype=torch.float64))
        intervals[emotion] = (float(quantiles[0]), float(quantiles[1]))
    quantiles = torch.quantile(hits / max(correct.numel(), 1), torch.tensor([low, high], dtype=torch.float64))
    intervals["overall"] = (float(quantiles[0]), float(quantiles[1]))
    return intervals


def failure_distribution(confusion_row: Tensor, true_index: int) -> Tensor:
    """Within the failures of one true emotion, the share predicted as each emotion (Figure 15);
    the true emotion's own entry is 0; all zeros when there is no failure."""
    failures = confusion_row.to(torch.float64).clone()
    failures[true_index] = 0
    total = failures.sum()
    return failures / total if total > 0 else failures


def chance_level(n_per_emotion: torch.Tensor) -> float:
    """What a classifier without information reaches: the better of guessing (1/6) and always
    answering the test split's most frequent emotion (the small model's failure mode)."""
    total = int(n_per_emotion.sum())
    return max(CHANCE, int(n_per_emotion.max()) / total) if total else CHANCE


def clearly_above_chance(ci: tuple[float, float], chance: float = CHANCE) -> bool:
    """The lower bound of the 95% interval is above chance. A constant answer gives a zero-width
    interval at the majority share under per-emotion resampling, hence chance_level()."""
    return ci[0] > chance
