"""Accuracy, confusion and intervals on hand-made inputs; interval coverage on simulated data."""

from __future__ import annotations

import math

import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.stats.metrics import (
    CHANCE,
    accuracy_ci,
    accuracy_per_emotion,
    bootstrap_mean_ci,
    chance_level,
    clearly_above_chance,
    confusion_matrix,
    degenerate,
    exact_binomial_ci,
    failure_distribution,
    overall_accuracy,
    unparseable_counts,
)

TRUE = torch.tensor([0, 0, 0, 1, 1, 2, 3, 4, 5, 5])
PRED = torch.tensor([0, 1, -1, 0, 1, 2, 5, 4, 5, -1])


def test_confusion_rows_true_columns_predicted_unparseable_left_out():
    confusion = confusion_matrix(TRUE, PRED)
    assert confusion.shape == (6, 6)
    assert confusion[0].tolist() == [1, 1, 0, 0, 0, 0]
    assert confusion[1].tolist() == [1, 1, 0, 0, 0, 0]
    assert confusion[3, 5] == 1 and int(confusion.sum()) == 8
    assert unparseable_counts(TRUE, PRED).tolist() == [1, 0, 0, 0, 0, 1]


def test_accuracy_counts_unparseable_as_wrong():
    confusion = confusion_matrix(TRUE, PRED)
    n = torch.bincount(TRUE, minlength=6)
    accuracy = accuracy_per_emotion(confusion, n)
    torch.testing.assert_close(accuracy, torch.tensor([1 / 3, 0.5, 1.0, 0.0, 1.0, 0.5], dtype=torch.float64))
    assert overall_accuracy(confusion, n) == 0.5
    assert torch.isnan(accuracy_per_emotion(confusion, torch.tensor([3, 2, 1, 1, 1, 0])))[5]


def test_failure_distribution_is_within_failures_only():
    row = torch.tensor([5, 3, 0, 1, 0, 0])
    torch.testing.assert_close(failure_distribution(row, 0), torch.tensor([0, 0.75, 0, 0.25, 0, 0], dtype=torch.float64))
    assert failure_distribution(torch.tensor([0, 4, 0, 0, 0, 0]), 1).sum() == 0


def _sample(n_per: int, rate: float, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    true = torch.arange(6).repeat_interleave(n_per)
    correct = torch.rand(true.numel(), generator=generator) < rate
    return correct, true


def test_exact_interval_has_the_clopper_pearson_closed_forms():
    # k = n: [(alpha/2)^(1/n), 1]; k = 0: [0, 1 - (alpha/2)^(1/n)].
    low, high = exact_binomial_ci(4, 4)
    assert low == pytest.approx(0.025 ** 0.25, abs=1e-9) and high == 1.0
    low, high = exact_binomial_ci(0, 4)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** 0.25, abs=1e-9)
    assert all(map(math.isnan, exact_binomial_ci(0, 0)))


def test_accuracy_ci_per_emotion_and_overall():
    correct, true = _sample(12, 0.6)
    ci = accuracy_ci(correct, true)
    assert set(ci) == {*EMOTIONS, "overall"}
    for e, emotion in enumerate(EMOTIONS):
        members = correct[true == e]
        assert ci[emotion] == exact_binomial_ci(int(members.sum()), members.numel())
        assert ci[emotion][0] <= float(members.float().mean()) <= ci[emotion][1]
    assert ci["overall"] == exact_binomial_ci(int(correct.sum()), correct.numel())


def test_all_correct_is_not_a_degenerate_interval():
    """4 of 4 right: the percentile bootstrap said [1, 1]; the exact interval keeps its width."""
    ci = accuracy_ci(torch.ones(24, dtype=torch.bool), torch.arange(6).repeat(4))
    assert not degenerate(ci["anger"]) and ci["anger"][0] < 0.4
    assert degenerate((1.0, 1.0)) and degenerate((float("nan"), float("nan")))
    assert not clearly_above_chance((1.0, 1.0))  # no verdict from a zero-width interval


def _coverage_of_exact(n: int, p: float, samples: int, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    hits = torch.binomial(torch.full((samples,), float(n)), torch.full((samples,), p), generator=generator).long()
    # One interval per possible count, looked up per simulated sample.
    table = torch.tensor([exact_binomial_ci(k, n) for k in range(n + 1)], dtype=torch.float64)
    low, high = table[hits, 0], table[hits, 1]
    return float(((low <= p) & (p <= high)).double().mean())


def test_exact_interval_covers_the_true_accuracy():
    # Large n: close to the nominal 95%. Clopper-Pearson is conservative at small n: never below.
    assert 0.93 <= _coverage_of_exact(100, 0.68, 4000, seed=0) <= 0.97
    assert _coverage_of_exact(19, 0.68, 4000, seed=1) >= 0.94
    assert _coverage_of_exact(4, 0.5, 4000, seed=2) >= 0.94


def test_bootstrap_mean_interval_covers_the_true_mean_at_the_default_size():
    """2,000 simulated paired effects of the default's 19 dialogues (normal, mean 0.3, sd 0.5):
    the 95% interval covers 0.3 in 93-97% of them (the plain percentile bootstrap: ~92%)."""
    generator = torch.Generator().manual_seed(0)
    covered = 0
    for chunk in range(4):  # 4 x 500 samples, 1,000 resamples each, vectorised
        values = torch.randn(500, 19, generator=generator, dtype=torch.float64) * 0.5 + 0.3
        ci = bootstrap_mean_ci(values, 1000, seed=chunk)
        covered += int(((ci[:, 0] <= 0.3) & (0.3 <= ci[:, 1])).sum())
    assert 0.93 <= covered / 2000 <= 0.97


def test_bootstrap_mean_interval_is_seeded_batched_and_undefined_below_two():
    values = torch.tensor([[0.1, -0.4, 0.3, 0.0, 0.2], [1.0, 1.0, 1.0, 1.0, 1.0]])
    ci = bootstrap_mean_ci(values, 500, seed=3)
    assert ci.shape == (2, 2)
    assert ci[0, 0] <= float(values[0].mean()) <= ci[0, 1] and ci[0, 0] < ci[0, 1]
    assert ci[1].tolist() == [1.0, 1.0]  # identical effects: degenerate, no verdict drawn
    assert torch.equal(bootstrap_mean_ci(values, 500, seed=3), ci)
    assert torch.equal(bootstrap_mean_ci(values[0], 500, seed=3), ci[0])
    assert torch.isnan(bootstrap_mean_ci(torch.tensor([0.5]), 500, seed=0)).all()


def test_clearly_above_chance_uses_the_lower_bound():
    assert clearly_above_chance((0.2, 0.8))
    assert not clearly_above_chance((CHANCE, 0.8))
    assert not clearly_above_chance((0.1, 0.5))
    assert not clearly_above_chance((0.25, 0.6), chance=0.3)


def test_chance_level_is_the_majority_share_when_that_beats_guessing():
    assert chance_level(torch.tensor([6, 5, 4, 4, 3, 5])) == pytest.approx(6 / 27)
    assert chance_level(torch.tensor([5, 5, 5, 5, 5, 5])) == pytest.approx(1 / 6)


def test_a_constant_answer_is_not_clearly_above_chance():
    """The small model's failure mode: one label for everything scores the majority share, which
    must not count as above chance."""
    n_per = torch.tensor([6, 5, 4, 4, 3, 5])
    true_idx = torch.repeat_interleave(torch.arange(6), n_per)
    correct = true_idx == 0
    ci = accuracy_ci(correct, true_idx)
    overall = ci["overall"]
    assert not clearly_above_chance(tuple(overall), chance_level(n_per))


def test_bootstrap_mean_interval_drawn_in_blocks_is_the_single_draw(monkeypatch):
    """The resamples come a block at a time (memory flat in n); any block gives the same bits."""
    import emoneurons.stats.metrics as metrics

    values = torch.randn(3, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    whole = bootstrap_mean_ci(values, 700, seed=5)
    monkeypatch.setattr(metrics, "RESAMPLE_ELEMENTS", 3 * 40 * 7)  # blocks of 7 resamples, the last one short
    assert torch.equal(bootstrap_mean_ci(values, 700, seed=5), whole)
    monkeypatch.setattr(metrics, "RESAMPLE_ELEMENTS", 1)  # one resample a block
    assert torch.equal(bootstrap_mean_ci(values[1], 700, seed=5), whole[1])
