"""The draw-level null: a masked condition's mean effect against the mean effects of many control
draws of the verdict's null kind (stats/effects.py: DRAW_RULE), beside the per-dialogue sign-flip
test, which pairs every dialogue with the mean of only `eval.control_draws` sets and so inherits
their luck.

Draw d is the same seeded set as control condition d of that kind
(conditions.control_neurons), so the conditions' own draws are reused and only draws
d >= eval.control_draws run here. Each extra run is reduced to its mean effect where it ran (in a
forked worker), so what is held is one number per draw, whatever the number of test dialogues; the
draws' neuron sets are drawn when their run starts, never all held at once. This pass runs on the
process that writes eval.json, after every condition (not sharded or resumed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from emoneurons.emotions import EMOTION_INDEX
from emoneurons.evaluate.classify import Classification, Mask, MaskedClassifier
from emoneurons.evaluate.conditions import Condition, control_id, control_neurons, is_rq2
from emoneurons.evaluate.mask_pool import classify_masks, mask_workers
from emoneurons.model.loading import LoadedModel
from emoneurons.params import ControlKind, EvalParams
from emoneurons.stats.effects import (
    ALPHA,
    DRAW_RULE,
    draw_level_null,
    draws_needed,
    label_log_probs,
    masked_answer_change,
)
from emoneurons.stats.metrics import UNPARSEABLE


def covered_masks(plan: Sequence[Condition], eval_params: EvalParams, top_rate: float) -> list[Condition]:
    """The plain masked conditions the draw-level null covers (eval.null_masks)."""
    masks = [c for c in plan if c.kind == "mask" and not c.scale]
    return masks if eval_params.null_masks == "all" else [c for c in masks if is_rq2(c, top_rate)]


class MeanEffect:
    """A run's mean test effect against the unmodified run: Δ log p(masked label) (score) or the
    change in answering the masked emotion (generate), averaged over the test dialogues; the same
    per-dialogue effect as the conditions' `effects.test_effect`."""

    def __init__(self, unmodified_predicted: Sequence[str | None], unmodified_scores: Tensor | None) -> None:
        self.base_lp = None if unmodified_scores is None else label_log_probs(unmodified_scores)
        self.base_pred = _as_index(unmodified_predicted)

    def __call__(self, predicted: Sequence[str | None], scores: Tensor | None, masked: str) -> float:
        m = EMOTION_INDEX[masked]
        if self.base_lp is not None and scores is not None:
            return float((label_log_probs(scores)[:, m] - self.base_lp[:, m]).mean())
        return float(masked_answer_change(self.base_pred, _as_index(predicted), m).mean())


def _as_index(predicted: Sequence[str | None]) -> Tensor:
    return torch.tensor([EMOTION_INDEX[p] if p is not None else UNPARSEABLE for p in predicted], dtype=torch.long)


class _ExtraDraws(Sequence):
    """The draws still to run, as masks drawn on demand (a few hundred sets of thousands of neurons
    are never all in memory)."""

    def __init__(self, slots: list[tuple[ControlKind, Condition, int]], eval_params: EvalParams, per_layer: int,
                 p_active: Tensor | None) -> None:
        self.slots, self.eval_params, self.per_layer, self.p_active = slots, eval_params, per_layer, p_active

    def __len__(self) -> int:
        return len(self.slots)

    def __getitem__(self, index):  # type: ignore[override]
        kind, mask, draw = self.slots[index]
        return Mask(control_neurons(kind, mask, draw, self.eval_params, self.per_layer, self.p_active))


def draw_null_record(
    lm: LoadedModel, engine: MaskedClassifier, plan: Sequence[Condition], outputs: Mapping[str, tuple],
    eval_params: EvalParams, top_rate: float, per_layer: int, p_active: Tensor | None, *,
    workers: int | None, progress: bool,
) -> dict | None:
    """eval.json's `draw_null` against controls of the verdict's null kind (the first of
    eval.controls); None when eval.null_draws is 0. `outputs`: per condition id, (predicted,
    label scores) of its run, the unmodified one included."""
    if not eval_params.null_draws:
        return None
    from tqdm import tqdm

    kind, draws = eval_params.controls[0], eval_params.null_draws
    effect = MeanEffect(*outputs["unmodified"])
    masks = covered_masks(plan, eval_params, top_rate)
    values: dict[str, list[float | None]] = {}
    slots: list[tuple[ControlKind, Condition, int]] = []
    for mask in masks:
        values[mask.id] = [None] * draws if mask.n_neurons else []
        for draw in range(draws if mask.n_neurons else 0):
            if draw < eval_params.control_draws:
                values[mask.id][draw] = effect(*outputs[control_id(mask.id, draw, kind)], mask.masked)
            else:
                slots.append((kind, mask, draw))

    def reduce(index: int, result: Classification) -> tuple[float, int]:
        return effect(result.predicted, result.scores, slots[index][1].masked), result.tokens_computed

    extra = _ExtraDraws(slots, eval_params, per_layer, p_active)
    if workers is None:
        workers = mask_workers(lm, len(extra))
    started = time.perf_counter()
    with tqdm(total=len(extra), desc=f"mask-eval draw-level null ({workers} worker{'s' * (workers > 1)})", unit="draw",
              file=sys.stderr, disable=not progress) as bar:
        reduced = classify_masks(engine, extra, workers, bar, reduce=reduce)
    if progress and extra:
        seconds = time.perf_counter() - started
        print(f"mask-eval draw-level null: {len(extra)} control runs in {seconds:.1f} s ({seconds / len(extra):.2f} s a run, "
              f"{workers} worker{'s' * (workers > 1)})", file=sys.stderr)
    for (_, mask, draw), (mean, _) in zip(slots, reduced):
        values[mask.id][draw] = mean
    tested = draw_level_null({mask.id: (effect(*outputs[mask.id], mask.masked), values[mask.id]) for mask in masks})
    m = sum(record["p"] is not None for record in tested.values())
    return {
        "kind": kind, "draws": draws, "masks": eval_params.null_masks, "alpha": ALPHA, "correction": "holm",
        "corrected_over": m, "draws_needed": draws_needed(m) if m else None,
        "rule": DRAW_RULE.format(m=m, needed=draws_needed(m) if m else "-", alpha=ALPHA),
        "runs": len(extra), "tokens_computed": int(sum(tokens for _, tokens in reduced)),
        "conditions": tested,
    }
