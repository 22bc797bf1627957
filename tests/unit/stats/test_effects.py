"""Paired effects, McNemar, the sign-flip test and the corrections, against hand computations and
brute-force enumeration; the test's error rate and power on simulated data."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats

from emoneurons.stats.effects import (
    NOT_DISTINGUISHABLE,
    NOT_ENOUGH_DATA,
    SPECIFIC,
    benjamini_hochberg,
    effect_summary,
    holm,
    label_deltas,
    label_log_probs,
    masked_answer_change,
    mcnemar_exact,
    sign_flip_test,
    specificity,
    verdict,
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
    p, floor = sign_flip_test(d, seed=0)
    flips = torch.tensor(list(itertools.product([1.0, -1.0], repeat=11)), dtype=torch.float64)
    expected = float(((flips * d).mean(1) <= d.mean() + 1e-12).double().mean())
    assert p == pytest.approx(expected, rel=1e-9)
    assert floor == 2.0**-10  # ten nonzero differences
    assert sign_flip_test(torch.zeros(5), seed=0) == (1.0, 1.0)
    assert sign_flip_test(-torch.ones(6), seed=0)[0] == pytest.approx(2.0**-6)


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


def test_draw_rank_counts_ties_against_the_set_and_draws_needed_by_hand():
    from emoneurons.stats.effects import draw_rank, draws_needed

    assert draw_rank(-1.0, [0.1, 0.2, -0.5]) == (1, 0.25)  # below every draw: p = 1 / (K + 1)
    assert draw_rank(0.2, [0.1, 0.2, -0.5]) == (4, 1.0)  # a tie counts against the set
    assert draw_rank(0.0, [0.1, 0.2, -0.5]) == (2, 0.5)
    # Holm's first step over m tests passes at m / (K + 1) <= 0.05: K = 119 for the six RQ2 masks.
    assert [draws_needed(m) for m in (1, 6, 48)] == [19, 119, 959]
    assert 6 / (119 + 1) <= 0.05 < 6 / (118 + 1)


def test_normal_prediction_p_by_hand():
    from emoneurons.stats.effects import normal_prediction_p

    draws = [0.1, -0.2, 0.3, 0.0, 0.15]
    mean = sum(draws) / 5
    sd = math.sqrt(sum((d - mean) ** 2 for d in draws) / 4)
    t = (-0.8 - mean) / (sd * math.sqrt(1 + 1 / 5))
    assert normal_prediction_p(-0.8, draws) == pytest.approx(stats.t.cdf(t, 4), rel=1e-12)
    assert normal_prediction_p(-0.8, draws) < 0.01 < normal_prediction_p(0.0, draws)
    assert normal_prediction_p(-0.8, [0.1, 0.2]) is None and normal_prediction_p(-0.8, [0.1] * 4) is None


def test_draw_level_null_holm_and_verdicts():
    from emoneurons.stats.effects import NOT_ENOUGH_DRAWS, draw_level_null

    low = [0.01 * k for k in range(119)]  # 119 draws, all above -1: rank 1, p = 1/120
    tested = draw_level_null({"a": (-1.0, low), "b": (0.5, low), "c": (0.0, [])})
    assert (tested["a"]["rank"], tested["a"]["p"]) == (1, pytest.approx(1 / 120, abs=1e-6))
    assert tested["a"]["p_holm"] == pytest.approx(2 / 120, abs=1e-6)  # Holm over the two with draws
    assert tested["a"]["verdict"] == SPECIFIC and tested["b"]["verdict"] == NOT_DISTINGUISHABLE
    assert tested["c"]["verdict"] == NOT_ENOUGH_DATA and tested["c"]["rank"] is None
    assert tested["a"]["verdict_normal"] == SPECIFIC and tested["a"]["p_normal"] < 1e-4
    few = draw_level_null({f"m{i}": (-1.0, low[:10]) for i in range(6)})
    assert all(r["verdict"] == NOT_ENOUGH_DRAWS and r["rank"] == 1 for r in few.values())  # 10 < 119 draws
    assert all(r["verdict_normal"] == SPECIFIC for r in few.values())  # the normal prediction resolves it


@pytest.mark.parametrize(("effects", "monotone", "reversals"), [
    ([-0.8, -0.6, -0.3, -0.1], True, 0),   # weakens steadily towards 0 at factor 1
    ([-0.8, -0.9, -0.3, -0.1], False, 1),  # 0.25 lowers the label more than zeroing
    ([0.4, 0.2, 0.5, 0.1], False, 1),      # a raised label that does not fall steadily
    ([0.0, 0.0, 0.0, 0.0], True, 0),
    ([-0.8, -0.6, -0.3, 0.2], False, 1),   # overshoots at 0.75: falls back to the unmodified model's 0
])
def test_monotone_steps_with_the_unmodified_model_at_factor_one(effects, monotone, reversals):
    from emoneurons.stats.effects import monotone_steps

    assert monotone_steps([0.0, 0.25, 0.5, 0.75], effects) == {"monotone": monotone, "reversals": reversals}
    assert monotone_steps([0.75, 0.0, 0.5, 0.25], [effects[3], effects[0], effects[2], effects[1]])["reversals"] == reversals
