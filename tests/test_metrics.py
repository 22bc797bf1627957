"""Accuracy, confusion and bootstrap intervals on hand-made inputs."""

from __future__ import annotations

import pytest
import torch

from emoneurons.evaluate.metrics import (
    CHANCE, accuracy_per_emotion, bootstrap_ci, chance_level, clearly_above_chance, confusion_matrix, failure_distribution,
    overall_accuracy, unparseable_counts,
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


def test_bootstrap_contains_point_estimate_and_is_deterministic():
    correct, true = _sample(12, 0.6)
    ci = bootstrap_ci(correct, true, 2000, seed=3)
    assert set(ci) == {"anger", "disgust", "fear", "happiness", "sadness", "surprise", "overall"}
    for e in range(6):
        point = float(correct[true == e].float().mean())
        lo, hi = list(ci.values())[e]
        assert lo <= point <= hi and lo < hi
    overall = float(correct.float().mean())
    assert ci["overall"][0] <= overall <= ci["overall"][1]
    assert bootstrap_ci(correct, true, 2000, seed=3) == ci
    assert bootstrap_ci(correct, true, 2000, seed=4) != ci


def test_bootstrap_narrows_with_more_dialogues():
    small, large = bootstrap_ci(*_sample(10, 0.6), 2000, seed=0), bootstrap_ci(*_sample(400, 0.6), 2000, seed=0)
    width = lambda ci: ci["overall"][1] - ci["overall"][0]  # noqa: E731
    assert width(large) < width(small) / 3


def test_all_correct_gives_a_degenerate_interval_at_one():
    true = torch.arange(6).repeat(5)
    ci = bootstrap_ci(torch.ones(30, dtype=torch.bool), true, 500, seed=0)
    assert ci["overall"] == (1.0, 1.0)


def test_clearly_above_chance_uses_the_lower_bound():
    assert clearly_above_chance((0.2, 0.8))
    assert not clearly_above_chance((CHANCE, 0.8))
    assert not clearly_above_chance((0.1, 0.5))
    assert not clearly_above_chance((0.25, 0.6), chance=0.3)


def test_chance_level_is_the_majority_share_when_that_beats_guessing():
    assert chance_level(torch.tensor([6, 5, 4, 4, 3, 5])) == pytest.approx(6 / 27)
    assert chance_level(torch.tensor([5, 5, 5, 5, 5, 5])) == pytest.approx(1 / 6)


def test_a_constant_answer_is_not_clearly_above_chance():
    """The small model's failure mode: one label for everything. Per-emotion resampling gives a
    zero-width interval at the majority share, which must not count as above chance."""
    n_per = torch.tensor([6, 5, 4, 4, 3, 5])
    true_idx = torch.repeat_interleave(torch.arange(6), n_per)
    correct = true_idx == 0
    ci = bootstrap_ci(correct, true_idx, n_resamples=200, seed=0)
    overall = ci["overall"]
    assert not clearly_above_chance(tuple(overall), chance_level(n_per))
