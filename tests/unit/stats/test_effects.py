"""Paired effects, McNemar, the sign-flip test and the corrections, against hand computations and
brute-force enumeration; the test's error rate and power on simulated data."""

from __future__ import annotations

import itertools

import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.stats.effects import (
    NOT_DISTINGUISHABLE, NOT_ENOUGH_DATA, SPECIFIC, benjamini_hochberg, effect_summary, holm, label_deltas,
    label_log_probs, masked_answer_change, mcnemar_exact, sign_flip_test, specificity, verdict,
)


def test_label_deltas_are_paired_log_prob_differences():
    base = label_log_probs(torch.tensor([[0.0, 0, 0, 0, 0, 0], [2.0, 0, 0, 0, 0, 0]]))
    masked = label_log_probs(torch.tensor([[1.0, 0, 0, 0, 0, 0], [0.0, 0, 0, 0, 0, 0]]))
    torch.testing.assert_close(base.exp().sum(1), torch.ones(2, dtype=torch.float64))
    deltas = label_deltas(base, masked, torch.tensor([0, 0]))
    e = torch.tensor(1.0, dtype=torch.float64).exp()
    expected = torch.stack([torch.log(e / (e + 5)) - torch.log(torch.tensor(1 / 6, dtype=torch.float64)),
                            torch.log(torch.tensor(1 / 6, dtype=torch.float64)) - torch.log(e**2 / (e**2 + 5))])
    torch.testing.assert_close(deltas, expected)
    assert masked_answer_change(torch.tensor([0, 1, 0]), torch.tensor([1, 1, 0]), 0).tolist() == [-1.0, 0.0, 0.0]


def test_effect_summary_means_per_true_emotion():
    true = torch.tensor([0, 0, 1, 1, 1, 2, 3, 4, 5, 5])
    values = torch.tensor([-1.0, -0.5, 0.2, 0.4, 0.0, 1.0, 0.0, -0.2, 0.3, 0.1])
    summary = effect_summary(values, true, 500, seed=0)
    assert summary["per_dialogue"] == pytest.approx(values.tolist())
    assert summary["mean"] == pytest.approx(float(values.mean()), abs=1e-4)
    assert summary["per_emotion"]["anger"] == {"n": 2, "mean": -0.75, "ci95": [None, None]}
    assert summary["per_emotion"]["disgust"]["mean"] == pytest.approx(0.2, abs=1e-4)
    assert summary["per_emotion"]["fear"]["ci95"] == [None, None]  # one dialogue: no interval
    assert summary["per_emotion"]["anger"]["ci95"] == [None, None]  # two: a bootstrap would only restate them
    many = effect_summary(torch.arange(12, dtype=torch.float64), torch.tensor([0] * 6 + [1] * 6), 500, seed=0)
    low, high = many["per_emotion"]["anger"]["ci95"]
    assert low < 2.5 < high
    low, high = summary["ci95"]
    assert low <= summary["mean"] <= high


def test_mcnemar_exact_counts_discordant_pairs():
    before = torch.tensor([1, 1, 1, 1, 1, 0, 1, 0], dtype=torch.bool)
    after = torch.tensor([0, 0, 0, 0, 0, 0, 1, 0], dtype=torch.bool)
    # 5 right -> wrong, 0 wrong -> right: two-sided exact p = 2 x 0.5^5.
    assert mcnemar_exact(before, after) == {"worse": 5, "better": 0, "p": 0.0625}
    assert mcnemar_exact(before, before)["p"] == 1.0


def test_sign_flip_test_equals_brute_force_enumeration():
    generator = torch.Generator().manual_seed(0)
    d = torch.randn(11, generator=generator, dtype=torch.float64) - 0.4
    d[3] = 0.0
    p, floor = sign_flip_test(d)
    flips = torch.tensor(list(itertools.product([1.0, -1.0], repeat=11)), dtype=torch.float64)
    expected = float(((flips * d).mean(1) <= d.mean() + 1e-12).double().mean())
    assert p == pytest.approx(expected, rel=1e-9)
    assert floor == 2.0**-10  # ten nonzero differences
    assert sign_flip_test(torch.zeros(5)) == (1.0, 1.0)
    assert sign_flip_test(-torch.ones(6))[0] == pytest.approx(2.0**-6)


def test_sign_flip_test_random_flips_beyond_enumeration_and_seeded():
    d = torch.linspace(-1.0, 0.5, 25, dtype=torch.float64)
    p, floor = sign_flip_test(d, flips=4096, seed=1)
    assert floor == pytest.approx(1 / 4097) and floor <= p < 0.5
    assert sign_flip_test(d, flips=4096, seed=1)[0] == p


def test_holm_and_bh_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # Sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max.
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: p_(k) x m / k = 0.02, 0.02, 0.04, 0.04 -> running min from the top.
    assert benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_verdict_rule():
    assert verdict(0.01, 2.0**-19, 48, True) == SPECIFIC
    assert verdict(0.2, 2.0**-19, 48, True) == NOT_DISTINGUISHABLE
    assert verdict(0.01, 2.0**-4, 48, True) == NOT_ENOUGH_DATA  # 48 / 16 > 0.05: could never pass
    assert verdict(0.0, 2.0**-19, 48, False) == NOT_ENOUGH_DATA  # no control / no neurons


def _simulated(shift: float, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    control = torch.randn(n, generator=generator, dtype=torch.float64) * 0.3 - 0.1
    mask = control + shift + torch.randn(n, generator=generator, dtype=torch.float64) * 0.5
    return mask, control


def test_specificity_tells_specific_from_random_and_flags_missing_controls():
    effects, controls = {}, {}
    for k, shift in enumerate([-0.8, -0.8, 0.0, 0.0, 0.3]):
        effects[f"c{k}"], control = _simulated(shift, 19, seed=k)
        controls[f"c{k}"] = [control]
    effects["none"], controls["none"] = torch.zeros(19, dtype=torch.float64), []
    out = specificity(effects, controls, {cid: 10 for cid in effects}, n_resamples=500, seed=0)
    assert [out[f"c{k}"]["verdict"] for k in range(5)] == [SPECIFIC, SPECIFIC, NOT_DISTINGUISHABLE, NOT_DISTINGUISHABLE,
                                                           NOT_DISTINGUISHABLE]
    assert out["none"]["verdict"] == NOT_ENOUGH_DATA and out["none"]["p"] is None
    raw = [out[f"c{k}"]["p"] for k in range(5)]
    assert [out[f"c{k}"]["p_holm"] for k in range(5)] == pytest.approx(holm(raw), abs=1e-5)  # corrected over 5, not 6
    assert out["c0"]["difference"] == pytest.approx(float((effects["c0"] - controls["c0"][0]).mean()), abs=1e-4)
    low, high = out["c0"]["difference_ci95"]
    assert low <= out["c0"]["difference"] <= high < 0


def test_sign_flip_error_rate_and_power_at_the_default_size():
    """500 simulated conditions of 19 dialogues: with no difference the one-sided test at 0.05
    rejects in 3-7% of them; with a difference of 0.6 sd in most."""
    rejections = {0.0: 0, -0.6: 0}
    for shift in rejections:
        for seed in range(500):
            mask, control = _simulated(shift, 19, seed=1000 + seed)
            rejections[shift] += sign_flip_test(mask - control, flips=2048, seed=seed)[0] <= 0.05
    assert 0.03 <= rejections[0.0] / 500 <= 0.07
    assert rejections[-0.6] / 500 > 0.6


def test_sign_flip_test_in_batches_is_the_single_draw_and_bounded(monkeypatch):
    """The flips come a batch at a time: the same p-value bit for bit, and numpy's peak memory
    (tracemalloc sees it) stays near one batch's, where all 16,384 flips of 1,000 dialogues at
    once took over 500 MB."""
    import tracemalloc

    import emoneurons.stats.effects as effects

    d = torch.randn(1000, generator=torch.Generator().manual_seed(2), dtype=torch.float64) - 0.05
    tracemalloc.start()
    try:
        p, floor = sign_flip_test(d, seed=4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 120 * 2**20, f"{peak / 2**20:.0f} MiB"
    assert floor <= p <= 1
    monkeypatch.setattr(effects, "FLIP_ELEMENTS", 10**12)  # all flips at once, as scipy does untold
    whole = sign_flip_test(d[:200], seed=4)
    monkeypatch.setattr(effects, "FLIP_ELEMENTS", 200 * 37)  # batches of 37 flips, the last one short
    assert sign_flip_test(d[:200], seed=4) == whole
