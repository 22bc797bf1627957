"""Each condition's numbers in eval.json: accuracy, CIs, confusion, unparseable answers, and its
paired effects against the unmodified run (McNemar, the label log-probability effect, vs controls)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.evaluate.conditions import Condition, control_id
from emoneurons.io.eval_file import VS_KEY
from emoneurons.params import EvalParams
from emoneurons.stats.effects import ALPHA, RULE, SIGN_FLIPS, condition_effect, label_log_probs, specificity
from emoneurons.stats.metrics import (
    UNPARSEABLE,
    accuracy_ci,
    accuracy_per_emotion,
    confusion_matrix,
    overall_accuracy,
    unparseable_counts,
)


def condition_metrics(true_idx: torch.Tensor, predicted: list[str | None], eval_params: EvalParams) -> dict:
    pred_idx = torch.tensor([EMOTION_INDEX[p] if p is not None else UNPARSEABLE for p in predicted], dtype=torch.long)
    n_per = torch.bincount(true_idx, minlength=len(EMOTIONS))
    confusion = confusion_matrix(true_idx, pred_idx)
    accuracy = accuracy_per_emotion(confusion, n_per)
    ci = accuracy_ci(pred_idx == true_idx, true_idx)
    unparseable = unparseable_counts(true_idx, pred_idx)
    return {
        "accuracy": {**{e: round(float(accuracy[i]), 4) for i, e in enumerate(EMOTIONS)},
                     "overall": round(overall_accuracy(confusion, n_per), 4)},
        "ci95": {k: [round(lo, 4), round(hi, 4)] for k, (lo, hi) in ci.items()},
        "confusion": confusion.tolist(),
        "unparseable": {e: int(unparseable[i]) for i, e in enumerate(EMOTIONS)},
        "predicted": list(predicted),  # per test dialogue, in the test table's row order
    }


def paired_effects(plan: list[Condition], outputs: Mapping[str, tuple[list[str | None], torch.Tensor | None]],
                   true_idx: torch.Tensor, eval_params: EvalParams) -> tuple[dict[str, dict], dict]:
    """Each masked or control condition's `mcnemar` and `effect` against the unmodified run, each
    masked condition's `vs_control` (its effect against its controls'), and eval.json's `effects`
    summary (what is measured, the rule). `outputs`: per condition id, (predicted, label scores)."""
    # Hundreds of small resampling ops: OpenMP threads only add barriers (16 ms a call on 2 busy cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _paired_effects(plan, outputs, true_idx, eval_params)
    finally:
        torch.set_num_threads(threads)


def _paired_effects(plan: list[Condition], outputs: Mapping[str, tuple[list[str | None], torch.Tensor | None]],
                    true_idx: torch.Tensor, eval_params: EvalParams) -> tuple[dict[str, dict], dict]:
    def as_index(predicted: list[str | None]) -> torch.Tensor:
        return torch.tensor([EMOTION_INDEX[p] if p is not None else UNPARSEABLE for p in predicted], dtype=torch.long)

    base_pred, base_scores = outputs["unmodified"]
    base_lp = label_log_probs(base_scores) if base_scores is not None else None
    records: dict[str, dict] = {}
    test_effects: dict[str, torch.Tensor] = {}
    for condition in plan[1:]:
        predicted, scores = outputs[condition.id]
        records[condition.id], test_effects[condition.id] = condition_effect(
            true_idx, EMOTION_INDEX[condition.masked], as_index(base_pred), as_index(predicted), base_lp,
            label_log_probs(scores) if scores is not None and base_lp is not None else None,
            eval_params.bootstrap, eval_params.seed)
    # The tested family: the plain masks (graded ones have their dose-response summary instead).
    masks = [c for c in plan if c.kind == "mask" and not c.scale]
    corrected_over = {}
    for kind in eval_params.controls:
        controls = {c.id: [test_effects[control_id(c.id, d, kind)] for d in range(eval_params.control_draws)] for c in masks}
        tested = specificity({c.id: test_effects[c.id] for c in masks}, controls, {c.id: c.n_neurons for c in masks},
                             eval_params.bootstrap, eval_params.seed)
        for cid, record in tested.items():
            records[cid][VS_KEY[kind]] = record
        corrected_over[kind] = sum(record["p"] is not None for record in tested.values())
    m = corrected_over[eval_params.controls[0]]
    summary = {
        "measure": "log p(label) over the six labels from the decision rule's scores (calibrated when eval.calibrate asks); "
                   "effect = condition minus unmodified on the same dialogue" if base_lp is not None else
                   "generate: change in answering the masked emotion (1/0) per dialogue; accuracy with McNemar's exact test",
        "test_effect": "delta_masked" if base_lp is not None else "masked_answer",
        "alternative": "less", "alpha": ALPHA, "sign_flips": SIGN_FLIPS, "corrected_over": m,
        "rule": RULE.format(flips=SIGN_FLIPS, exact=SIGN_FLIPS.bit_length() - 1, m=m, alpha=ALPHA),
        "null": eval_params.controls[0],
        "controls": {kind: {"key": VS_KEY[kind], "corrected_over": corrected_over[kind]} for kind in eval_params.controls},
    }
    return records, summary
