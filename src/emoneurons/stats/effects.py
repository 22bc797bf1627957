"""Paired effects of a mask on the same test dialogues, and whether emotion neurons matter more
than random ones: per dialogue against a few control draws (the sign-flip test), and per draw
against many (the draw-level null), and how an effect grows with the mask's strength.

Accuracy over 2-4 dialogues per emotion cannot show an effect; the label log-probabilities can.
With `eval.method: score` each condition gives every test dialogue six label scores (calibrated
when `eval.calibrate` asks); `label_log_probs` turns them into log-probabilities over the six
labels, the classifier's own decision rule. A condition's effect on dialogue i is
Δ log p(label) = log p_condition(label | i) - log p_unmodified(label | i), for the dialogue's true
label and for the masked emotion's label (paired: same dialogue, same prompt).

Specificity: per masked condition, the per-dialogue differences between its effect and its
random controls' mean effect are tested with a one-sided sign-flip test (H1: the emotion's
neurons lower the masked label more than random neurons of the same layers), p-values corrected
across all masked conditions by Holm (family-wise) and Benjamini-Hochberg (false discovery rate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from emoneurons.emotions import EMOTIONS
from emoneurons.stats.metrics import bootstrap_mean_ci

ALPHA = 0.05
# Sign flips per test: exact enumeration up to 14 dialogues, else this many random flips (smallest
# p-value then 1 / (SIGN_FLIPS + 1), 6e-5: x 48 conditions still far below 0.05). ~50 ms a test.
SIGN_FLIPS = 2**14
# Dialogue x flip pairs per batch of the sign-flip test (~16 MB per array scipy makes of them).
FLIP_ELEMENTS = 1 << 20
SPECIFIC = "specific"
NOT_DISTINGUISHABLE = "not distinguishable from random"
NOT_ENOUGH_DATA = "not enough data"
RULE = (
    "Per masked condition and control kind, d_i = (the condition's effect on dialogue i) - (the mean effect of its "
    "random-neuron controls of that kind on dialogue i), over all test dialogues; the effect is Δ log p(masked emotion's label) "
    "(eval.method score) or the change in answering the masked emotion, 1/0 (generate). One-sided sign-flip test of "
    "mean d < 0 (exact up to {exact} dialogues, else {flips} random flips); p-values Holm-corrected across the {m} "
    "masked conditions, each control kind on its own (Benjamini-Hochberg beside it). specific: Holm p <= {alpha}; not enough data: the condition "
    "masks no neuron, has no control, or even the most extreme data could not pass (m x the smallest p-value the "
    "test can reach at its number of nonzero d_i > {alpha}); else not distinguishable from random."
)


def label_log_probs(scores: Tensor) -> Tensor:
    """[n, 6] label scores -> log-probabilities over the six labels (rows sum to one in p)."""
    return torch.log_softmax(scores.to(torch.float64), dim=1)


def label_deltas(unmodified: Tensor, condition: Tensor, label_idx: Tensor) -> Tensor:
    """[n] log p_condition(label_i) - log p_unmodified(label_i) for each dialogue's `label_idx`."""
    pick = label_idx.long().unsqueeze(1)
    return (condition.gather(1, pick) - unmodified.gather(1, pick)).squeeze(1)


def _round(value: float, digits: int = 4) -> float | None:
    return None if value != value else round(float(value), digits)


# Fewer dialogues than this: a mean per true emotion gets no interval. A bootstrap of 2-4 values
# only restates their range (seen: 2 dialogues, [-0.37, -0.27]), which is no 95% interval.
MIN_INTERVAL_N = 5


def effect_summary(values: Tensor, true_idx: Tensor, n_resamples: int, seed: int) -> dict:
    """Per-dialogue values, their mean with a paired bootstrap 95% CI, and the same per true
    emotion (its CI null below MIN_INTERVAL_N dialogues)."""
    values = values.to(torch.float64)
    groups = {e: values[true_idx == i] for i, e in enumerate(EMOTIONS)}
    lows_highs = bootstrap_mean_ci(values, n_resamples, seed)
    per_emotion = {}
    for e, members in groups.items():
        ci = bootstrap_mean_ci(members, n_resamples, seed) if members.numel() >= MIN_INTERVAL_N else (math.nan, math.nan)
        per_emotion[e] = {"n": int(members.numel()), "mean": _round(members.mean(), 6) if members.numel() else None,
                          "ci95": [_round(ci[0], 6), _round(ci[1], 6)]}
    return {"per_dialogue": [_round(v, 6) for v in values.tolist()], "mean": _round(values.mean(), 6),
            "ci95": [_round(lows_highs[0], 6), _round(lows_highs[1], 6)], "per_emotion": per_emotion}


def mcnemar_exact(unmodified_correct: Tensor, condition_correct: Tensor) -> dict:
    """McNemar's exact test on paired right/wrong: the discordant pairs (right -> wrong `worse`,
    wrong -> right `better`) against a fair coin, two-sided; p = 1 when there is none."""
    worse = int((unmodified_correct & ~condition_correct).sum())
    better = int((~unmodified_correct & condition_correct).sum())
    p = stats.binomtest(worse, worse + better, 0.5).pvalue if worse + better else 1.0
    return {"worse": worse, "better": better, "p": _round(p, 6)}


def sign_flip_test(differences: Tensor, *, seed: int, flips: int = SIGN_FLIPS) -> tuple[float, float]:
    """One-sided paired sign-flip test of mean(differences) < 0 (scipy's permutation_test, exact
    when 2^n <= flips): (p-value, the smallest p-value this test can give at these data's number
    of nonzero differences). (1, 1) when every difference is zero."""
    d = differences.to(torch.float64).numpy()
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return 1.0, 1.0
    # scipy draws all flips at once unless told a batch: flips x n x 2 indices and as many values
    # (4 GB per test at 14k dialogues). Its batches permute the same random stream in the same
    # order, so the p-value does not depend on the batch (tests/unit/stats/test_effects.py).
    batch = max(1, FLIP_ELEMENTS // d.size)
    result = stats.permutation_test((d,), lambda x, axis=-1: np.mean(x, axis=axis), permutation_type="samples",
                                    alternative="less", n_resamples=flips, vectorized=True, batch=batch,
                                    random_state=np.random.default_rng(seed))
    exact = 2 ** d.size <= flips
    floor = 2.0**-nonzero if exact else max(2.0**-nonzero, 1 / (flips + 1))
    return float(result.pvalue), floor


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in input order."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]).clip(max=1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in input order."""
    return stats.false_discovery_control(np.asarray(pvalues, dtype=float), method="bh").tolist() if len(pvalues) else []


def verdict(p_holm: float, floor: float, m: int, testable: bool, alpha: float = ALPHA) -> str:
    """RULE's three outcomes for one condition."""
    if not testable or m * floor > alpha:
        return NOT_ENOUGH_DATA
    return SPECIFIC if p_holm <= alpha else NOT_DISTINGUISHABLE


def masked_answer_change(unmodified_pred: Tensor, condition_pred: Tensor, masked: int) -> Tensor:
    """[n] +1 / 0 / -1: the condition starts / keeps / stops answering the masked emotion (generate's effect)."""
    return (condition_pred == masked).to(torch.float64) - (unmodified_pred == masked).to(torch.float64)


def condition_effect(
    true_idx: Tensor, masked: int, unmodified_pred: Tensor, condition_pred: Tensor,
    unmodified_lp: Tensor | None, condition_lp: Tensor | None, n_resamples: int, seed: int,
) -> tuple[dict, Tensor]:
    """eval.json's `mcnemar` and `effect` of one condition against the unmodified run, and the
    per-dialogue effect the specificity test uses (Δ log p(masked label), or for generate the
    masked answer's change). `*_lp`: `label_log_probs` (None for generate)."""
    record = {"mcnemar": mcnemar_exact(unmodified_pred == true_idx, condition_pred == true_idx)}
    if unmodified_lp is not None and condition_lp is not None:
        delta_true = label_deltas(unmodified_lp, condition_lp, true_idx)
        delta_masked = label_deltas(unmodified_lp, condition_lp, torch.full_like(true_idx, masked))
        record["effect"] = {"delta_true": effect_summary(delta_true, true_idx, n_resamples, seed),
                            "delta_masked": effect_summary(delta_masked, true_idx, n_resamples, seed)}
        return record, delta_masked
    change = masked_answer_change(unmodified_pred, condition_pred, masked)
    record["effect"] = {"masked_answer": effect_summary(change, true_idx, n_resamples, seed)}
    return record, change


def specificity(
    mask_effects: dict[str, Tensor], control_effects: dict[str, list[Tensor]], n_neurons: dict[str, int],
    n_resamples: int, seed: int, alpha: float = ALPHA, flips: int = SIGN_FLIPS,
) -> dict[str, dict]:
    """Per masked condition id: its mean effect and its controls', the mean paired difference with
    a bootstrap 95% CI, the sign-flip p-value, Holm and BH p-values across all given conditions,
    and RULE's verdict. A condition without controls or neurons keeps p = null, `not enough data`."""
    ids = list(mask_effects)
    tested = {cid: bool(control_effects.get(cid)) and n_neurons.get(cid, 0) > 0 for cid in ids}
    out, raw, floors = {}, {}, {}
    for cid in ids:
        effect = mask_effects[cid].to(torch.float64)
        record = {"mask_mean": _round(effect.mean(), 6), "control_mean": None, "difference": None,
                  "difference_ci95": [None, None], "p": None, "p_floor": None}
        if tested[cid]:
            control = torch.stack([c.to(torch.float64) for c in control_effects[cid]]).mean(0)
            difference = effect - control
            ci = bootstrap_mean_ci(difference, n_resamples, seed)
            raw[cid], floors[cid] = sign_flip_test(difference, seed=seed, flips=flips)
            record |= {"control_mean": _round(control.mean(), 6), "difference": _round(difference.mean(), 6),
                       "difference_ci95": [_round(ci[0], 6), _round(ci[1], 6)], "p": _round(raw[cid], 6),
                       "p_floor": float(f"{floors[cid]:.3g}")}
        out[cid] = record
    m = len(raw)
    adjusted = dict(zip(raw, zip(holm(list(raw.values())), benjamini_hochberg(list(raw.values())))))
    for cid in ids:
        p_holm, p_bh = adjusted.get(cid, (None, None))
        out[cid] |= {"p_holm": None if p_holm is None else _round(p_holm, 6), "p_bh": None if p_bh is None else _round(p_bh, 6),
                     "verdict": verdict(p_holm if p_holm is not None else 1.0, floors.get(cid, 1.0), m, tested[cid], alpha)}
    return out


NOT_ENOUGH_DRAWS = "not enough draws"
DRAW_RULE = (
    "Per masked condition: its mean test effect over all test dialogues, e_0, against the mean effects e_1..e_K of "
    "K control sets of the verdict's null kind (seeded draws; the first eval.control_draws are the conditions' own "
    "controls). Rank: rank = 1 + #{{k: e_k <= e_0}} (ties count against the set), p = rank / (K + 1), one-sided "
    "(the set lowers the masked label more than random sets do), no assumption on the draws' distribution; its "
    "smallest value is 1 / (K + 1), so passing Holm over the {m} masked conditions covered needs K >= m / alpha - 1 "
    "draws ({needed}). Normal: p_normal = P(t_(K-1) <= (e_0 - mean) / (sd * sqrt(1 + 1/K))), the prediction "
    "interval of one more draw, assuming the draws' effects are normal; it resolves with few draws. Each p is "
    "Holm-corrected across the masked conditions covered. verdict (rank): specific: Holm p <= {alpha}; not enough "
    "draws: K below the number needed; else not distinguishable from random. verdict_normal: specific or not "
    "distinguishable from random by p_normal's Holm p (not enough data below 3 draws or with no spread)."
)


def draw_rank(effect: float, draws: Sequence[float]) -> tuple[int, float]:
    """The set's rank among itself and the draws (1: below every draw; a tie counts against the set)
    and the one-sided Monte Carlo p-value rank / (draws + 1)."""
    rank = 1 + sum(1 for d in draws if d <= effect)
    return rank, rank / (len(draws) + 1)


def draws_needed(m: int, alpha: float = ALPHA) -> int:
    """The fewest draws K whose smallest p-value, 1 / (K + 1), passes Holm's first step over m
    tests (m / (K + 1) <= alpha)."""
    return max(math.ceil(round(m / alpha, 9)) - 1, 1)


def normal_prediction_p(effect: float, draws: Sequence[float]) -> float | None:
    """One-sided p of `effect` as one more draw from a normal fitted to `draws`: the t prediction
    interval, P(t_(K-1) <= (effect - mean) / (sd * sqrt(1 + 1/K))); None below 3 draws or with sd 0."""
    values = np.asarray(draws, dtype=float)
    if values.size < 3:
        return None
    sd = values.std(ddof=1)
    if not sd > 0:
        return None
    t = (effect - values.mean()) / (sd * math.sqrt(1 + 1 / values.size))
    return float(stats.t.cdf(t, df=values.size - 1))


def draw_level_null(effects: dict[str, tuple[float, Sequence[float]]], alpha: float = ALPHA) -> dict[str, dict]:
    """Per condition id, (its mean effect, the control draws' mean effects) -> its rank and p among
    the draws and its normal-prediction p, each Holm-corrected across the conditions that have them,
    and DRAW_RULE's verdicts."""
    tested = [cid for cid, (_, draws) in effects.items() if len(draws)]
    ranked = {cid: draw_rank(*effects[cid]) for cid in tested}
    adjusted = dict(zip(tested, holm([ranked[cid][1] for cid in tested])))
    normal = {cid: p for cid in tested if (p := normal_prediction_p(*effects[cid])) is not None}
    normal_adjusted = dict(zip(normal, holm(list(normal.values()))))
    needed = draws_needed(len(tested), alpha) if tested else None
    out = {}
    for cid, (effect, draws) in effects.items():
        values = np.asarray(draws, dtype=float)
        record = {"effect": _round(effect, 6), "draws": [_round(v, 6) for v in values.tolist()],
                  "draws_mean": _round(values.mean(), 6) if values.size else None,
                  "draws_sd": _round(values.std(ddof=1), 6) if values.size > 1 else None,
                  "rank": None, "p": None, "p_holm": None, "verdict": NOT_ENOUGH_DATA,
                  "p_normal": None, "p_normal_holm": None, "verdict_normal": NOT_ENOUGH_DATA}
        if cid in ranked:
            rank, p = ranked[cid]
            p_holm = adjusted[cid]
            verdict = (NOT_ENOUGH_DRAWS if values.size < needed else
                       SPECIFIC if round(p_holm, 12) <= alpha else NOT_DISTINGUISHABLE)
            record |= {"rank": rank, "p": _round(p, 6), "p_holm": _round(p_holm, 6), "verdict": verdict}
        if cid in normal:
            record |= {"p_normal": float(f"{normal[cid]:.4g}"), "p_normal_holm": float(f"{normal_adjusted[cid]:.4g}"),
                       "verdict_normal": SPECIFIC if normal_adjusted[cid] <= alpha else NOT_DISTINGUISHABLE}
        out[cid] = record
    return out


def monotone_steps(scales: Sequence[float], effects: Sequence[float]) -> dict:
    """Is an effect graded with the mask's strength? The points (scale, effect) with (1, 0) added
    (scale 1 is the unmodified model), ordered by scale: `reversals` counts the steps that move
    against the overall direction (the effect at the smallest scale towards 0 at scale 1);
    monotone when there is none."""
    points = sorted(zip(scales, effects)) + [(1.0, 0.0)]
    values = [v for _, v in points]
    direction = np.sign(values[-1] - values[0])
    steps = np.sign(np.diff(values))
    reversals = int(np.sum(steps == -direction)) if direction else int(np.count_nonzero(steps))
    return {"monotone": reversals == 0, "reversals": reversals}
