"""Accuracy, confusion and intervals over the six emotions (EMOTIONS order).

`true_idx` / `pred_idx` are LongTensors of emotion indices; a prediction of -1 is an unparseable
answer: wrong in accuracy, absent from the confusion matrix, counted separately.

Accuracies (k of n) get exact Clopper-Pearson intervals: at the 2-4 test dialogues per emotion
of a laptop run a percentile bootstrap of a proportion collapses (4 of 4 resamples to [1, 1]);
Clopper-Pearson covers at least its level at every n. Means of continuous effects get an
expanded percentile bootstrap (`bootstrap_mean_ci`).
"""

from __future__ import annotations

import math

import torch
from scipy import stats
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


def exact_binomial_ci(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion (scipy's exact binomial); NaNs for no trials."""
    if trials == 0:
        return (float("nan"), float("nan"))
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="exact")
    return (float(ci.low), float(ci.high))


def accuracy_ci(correct: Tensor, true_idx: Tensor, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Clopper-Pearson intervals of accuracy per emotion and overall."""
    correct, true_idx = correct.cpu().bool(), true_idx.cpu()
    intervals = {e: exact_binomial_ci(int(correct[true_idx == i].sum()), int((true_idx == i).sum()), level)
                 for i, e in enumerate(EMOTIONS)}
    intervals["overall"] = exact_binomial_ci(int(correct.sum()), correct.numel(), level)
    return intervals


# Elements of one block of bootstrap resamples (values and their indices: ~16 MB each).
RESAMPLE_ELEMENTS = 1 << 21


def bootstrap_mean_ci(values: Tensor, n_resamples: int, seed: int, level: float = 0.95) -> Tensor:
    """[..., 2] bootstrap interval of the mean over the last dimension (n observations), batched
    over the leading ones. The plain percentile bootstrap is too narrow at small n (its spread is
    the plug-in variance, divided by n, not n - 1); this is Hesterberg's expanded percentile
    interval: the percentiles are taken at the tail share that a t interval with n - 1 degrees of
    freedom would have under a normal of the bootstrap's spread. NaNs for n < 2."""
    values = values.to(torch.float64).cpu()
    n = values.shape[-1]
    if n < 2 or n_resamples < 1:
        return torch.full((*values.shape[:-1], 2), float("nan"), dtype=torch.float64)
    alpha = 1 - level
    tail = float(stats.norm.cdf(math.sqrt(n / (n - 1)) * stats.t.ppf(alpha / 2, n - 1)))
    generator = torch.Generator().manual_seed(seed)
    # The resamples a few at a time, so memory stays flat in n (14k test dialogues x 1,000
    # resamples drawn at once took 230 MB): the generator draws the same numbers in the same
    # order whatever the block, and each resample's mean is its own row's, so the interval is
    # bit for bit the one of a single draw (tests/unit/stats/test_metrics.py).
    block = max(1, RESAMPLE_ELEMENTS // (n * max(1, values[..., 0].numel())))
    means = torch.cat([values[..., torch.randint(n, (min(block, n_resamples - start), n), generator=generator)].mean(dim=-1)
                       for start in range(0, n_resamples, block)], dim=-1)  # [..., n_resamples]
    quantiles = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64), dim=-1)
    return quantiles.movedim(0, -1)


def degenerate(ci: tuple[float, float]) -> bool:
    """A zero-width or undefined interval: no verdict may be drawn from it."""
    low, high = ci
    return not (math.isfinite(low) and math.isfinite(high)) or high - low <= 0


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
    """The lower bound of the 95% interval is above chance, and the interval is not degenerate.
    A constant answer scores the majority share, hence chance_level()."""
    return not degenerate(ci) and ci[0] > chance
