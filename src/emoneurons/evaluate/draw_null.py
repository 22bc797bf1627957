"""The draw-level null: a masked condition's mean effect against the mean effects of many control
draws of the verdict's null kind (stats/effects.py: DRAW_RULE), beside the per-dialogue sign-flip
test, which pairs every dialogue with the mean of only `eval.control_draws` sets and so inherits
their luck.

Draw d is the same seeded set as control condition d of that kind
(conditions.control_neurons), so the conditions' own draws are reused and only draws
d >= eval.control_draws run here. They run on each chunk of the test dialogues right after its
conditions (masking_eval.py), on the process that writes eval.json (not sharded), each run
reduced where it ran (in a forked worker) to its effect summed over the chunk's dialogues, so what
is held is one number per draw, whatever the number of test dialogues; the chunks' sums are saved
with the chunk (resumed) and a draw's mean is their total over the test dialogues (in one chunk:
the mean of the dialogues' effects, as torch's mean is their sum divided by their number). The
draws' neuron sets are drawn when their run starts, never all held at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from emoneurons.emotions import EMOTION_INDEX
from emoneurons.evaluate.classify import Classification, Mask, MaskedClassifier
from emoneurons.evaluate.conditions import Condition, control_id, control_neurons, is_rq2
from emoneurons.evaluate.mask_pool import classify_masks
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
    """A run's test effect against the unmodified run: Δ log p(masked label) (score) or the change
    in answering the masked emotion (generate), per test dialogue; the same per-dialogue effect as
    the conditions' `effects.test_effect`. Called: its mean over the dialogues; `total`: its sum."""

    def __init__(self, unmodified_predicted: Sequence[str | None], unmodified_scores: Tensor | None) -> None:
        self.base_lp = None if unmodified_scores is None else label_log_probs(unmodified_scores)
        self.base_pred = _as_index(unmodified_predicted)

    def _per_dialogue(self, predicted: Sequence[str | None], scores: Tensor | None, masked: str) -> Tensor:
        m = EMOTION_INDEX[masked]
        if self.base_lp is not None and scores is not None:
            return label_log_probs(scores)[:, m] - self.base_lp[:, m]
        return masked_answer_change(self.base_pred, _as_index(predicted), m)

    def __call__(self, predicted: Sequence[str | None], scores: Tensor | None, masked: str) -> float:
        return float(self._per_dialogue(predicted, scores, masked).mean())

    def total(self, predicted: Sequence[str | None], scores: Tensor | None, masked: str) -> float:
        return float(self._per_dialogue(predicted, scores, masked).sum())


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


class NullDraws:
    """The draw-level null's extra runs (draws d >= eval.control_draws of each covered mask, of the
    verdict's null kind), run a chunk of the test dialogues at a time (`run_chunk`), and its record."""

    def __init__(self, plan: Sequence[Condition], eval_params: EvalParams, top_rate: float, per_layer: int,
                 p_active: Tensor | None) -> None:
        self.kind, self.draws, self.eval_params = eval_params.controls[0], eval_params.null_draws, eval_params
        self.covered = covered_masks(plan, eval_params, top_rate)
        self.slots: list[tuple[ControlKind, Condition, int]] = [
            (self.kind, mask, draw) for mask in self.covered for draw in range(self.draws if mask.n_neurons else 0)
            if draw >= eval_params.control_draws]
        self.masks = _ExtraDraws(self.slots, eval_params, per_layer, p_active)

    def run_chunk(self, engine: MaskedClassifier, unmodified: tuple, workers: int, bar, step: int) -> tuple[list[float], int]:
        """Every extra draw on one chunk (its engine after its unmodified run, whose (predicted,
        scores) `unmodified` is): per draw its effect summed over the chunk's dialogues, and the
        tokens computed."""
        effect = MeanEffect(*unmodified[:2])

        def reduce(index: int, result: Classification) -> tuple[float, int]:
            return effect.total(result.predicted, result.scores, self.slots[index][1].masked), result.tokens_computed

        reduced = classify_masks(engine, self.masks, workers, bar, reduce=reduce, step=step)
        return [total for total, _ in reduced], int(sum(tokens for _, tokens in reduced))

    def record(self, outputs: Mapping[str, tuple], totals: Sequence[float], tokens: int, n_test: int) -> dict:
        """eval.json's `draw_null`: `outputs` per condition id, (predicted, label scores) of its run,
        the unmodified one included; `totals` per extra draw its effect summed over all test dialogues."""
        effect = MeanEffect(*outputs["unmodified"])
        values: dict[str, list[float | None]] = {mask.id: [None] * self.draws if mask.n_neurons else [] for mask in self.covered}
        for mask in self.covered:
            for draw in range(min(self.draws, self.eval_params.control_draws) if mask.n_neurons else 0):
                values[mask.id][draw] = effect(*outputs[control_id(mask.id, draw, self.kind)], mask.masked)
        for (_, mask, draw), total in zip(self.slots, totals):
            values[mask.id][draw] = total / n_test
        tested = draw_level_null({mask.id: (effect(*outputs[mask.id], mask.masked), values[mask.id]) for mask in self.covered})
        m = sum(record["p"] is not None for record in tested.values())
        return {
            "kind": self.kind, "draws": self.draws, "masks": self.eval_params.null_masks, "alpha": ALPHA, "correction": "holm",
            "corrected_over": m, "draws_needed": draws_needed(m) if m else None,
            "rule": DRAW_RULE.format(m=m, needed=draws_needed(m) if m else "-", alpha=ALPHA),
            "runs": len(self.slots), "tokens_computed": tokens,
            "conditions": tested,
        }
