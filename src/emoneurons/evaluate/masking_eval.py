"""mask-eval's body: every condition through one classifier, and the eval.json / headline.json
dictionaries of docs/CONTRACTS.md. Its parts: shots.py (the split's labels, the in-context shots),
calibration.py, prompt_budget.py, mask_pool.py (the forked workers), condition_metrics.py, exp_metrics.py (headline.json),
draw_null.py (the draw-level null), dose_response.py (graded masking's summary)."""

from __future__ import annotations

import sys
from typing import Protocol

import polars as pl
import torch

from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.evaluate.calibration import calibration_dialogues
from emoneurons.evaluate.classify import Mask, MaskedClassifier
from emoneurons.evaluate.condition_metrics import condition_metrics, paired_effects
from emoneurons.evaluate.conditions import Condition, first_masked_layers, plan_conditions, unique_masks
from emoneurons.evaluate.dose_response import dose_response_record
from emoneurons.evaluate.draw_null import draw_null_record
from emoneurons.evaluate.exp_metrics import headline
from emoneurons.evaluate.keyword_control import keyword_control_record
from emoneurons.evaluate.mask_pool import classify_masks, mask_workers
from emoneurons.evaluate.prompt_budget import dialogue_budget
from emoneurons.evaluate.shots import draw_shots, test_labels
from emoneurons.io.eval_file import eval_record
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.model.architecture import decoder_layers
from emoneurons.model.loading import LoadedModel
from emoneurons.params import EvalParams
from emoneurons.stats.metrics import chance_level, clearly_above_chance
from emoneurons.text.classification_prompt import classification_prompt
from emoneurons.text.cue_removal import cue_token_counts, removal_record
from emoneurons.text.nrc_lexicon import cue_words
from emoneurons.text.prompt_format import resolve_prompt_format
from emoneurons.text.truncation import Truncation, cut_dialogues


class MaskSchedule(Protocol):
    """Which masked conditions this process runs, and what it keeps across runs and processes
    (runtime.resume.ConditionSchedule: shards over ranks, a checkpoint per condition, gather on rank 0).
    A run is the tuple classify_masks gives for one mask, kept and passed on whole."""

    processes: int

    def start(self, n_masks: int) -> tuple[list[int], dict[int, tuple]]: ...

    def finished(self, index: int, run: tuple) -> None: ...

    def combine(self, runs: dict[int, tuple]) -> dict[int, tuple] | None: ...


def _classifier(lm: LoadedModel, train_df: pl.DataFrame, test_df: pl.DataFrame, eval_params: EvalParams, plan: list[Condition], *,
                batch_size: int, max_length: int | None, train_name: str) -> tuple[MaskedClassifier, str, Truncation | None]:
    """The engine over the test dialogues with the in-context shots' prompt and the calibration
    dialogues (both cut to max_length when given); the prompt format used and what was cut."""
    shots = draw_shots(train_df, eval_params.shots, eval_params.seed, eval_params.shot_selection, train_name=train_name)
    prompt_format = resolve_prompt_format(lm.tokenizer, eval_params.prompt_format)
    prompt = classification_prompt(lm.tokenizer, shots, eval_params.shot_instruction, prompt_format)
    test_dialogues = test_df["dialogue"].to_list()
    reference = calibration_dialogues(train_df, eval_params, shots, train_name=train_name)
    truncation = None
    if max_length is not None:
        truncation = Truncation(max_length, dialogue_budget(lm, prompt, eval_params, max_length))
        test_dialogues = cut_dialogues(lm.tokenizer, test_dialogues, truncation)
        reference = cut_dialogues(lm.tokenizer, reference, truncation)
    engine = MaskedClassifier(
        lm, prompt, test_dialogues, eval_params.method, batch_size=batch_size,
        max_new_tokens=eval_params.max_new_tokens, boundaries=first_masked_layers(plan),
        label_format=eval_params.label_format, reference=reference,
        recalibrate=eval_params.recalibrate,
    )
    return engine, prompt_format, truncation


def _run_masks(lm: LoadedModel, engine: MaskedClassifier, masks: list[Mask], *, progress: bool, workers: int | None,
               schedule: MaskSchedule | None) -> list[tuple] | None:
    """(predicted, scores, tokens computed) of the unmodified run, then of each mask; None on a
    process that does not combine the schedule's shares."""
    from tqdm import tqdm

    todo, saved = list(range(len(masks))), {}
    if schedule is not None:
        todo, saved = schedule.start(len(masks))
    # Under a launcher each rank runs its share in process: no fork beside the process group.
    if workers is None:
        workers = mask_workers(lm, len(todo)) if schedule is None or schedule.processes == 1 else 1
    with tqdm(total=1 + len(todo), desc=f"mask-eval conditions ({workers} worker{'s' * (workers > 1)})", unit="cond",
              file=sys.stderr, disable=not progress) as bar:
        # The unmodified run first, in process: it keeps the states that later masks start from.
        result = engine.classify()
        bar.update(1)
        runs = [(result.predicted, result.scores, result.tokens_computed)]
        finished = classify_masks(engine, masks, workers, bar, todo, None if schedule is None else schedule.finished)
    if schedule is not None:
        combined = schedule.combine(saved | {i: finished[i] for i in todo})
        if combined is None:
            return None
        finished = [combined[i] for i in range(len(masks))]
    return runs + finished


def evaluate_masking(
    lm: LoadedModel,
    train_df: pl.DataFrame,
    test_df: pl.DataFrame,
    neurons: NeuronsFile,
    eval_params: EvalParams,
    top_rate: float,
    *,
    batch_size: int = 16,
    progress: bool = True,
    workers: int | None = None,
    max_length: int | None = None,
    schedule: MaskSchedule | None = None,
    train_name: str = "train split",
    test_name: str = "test split",
    p_active: torch.Tensor | None = None,
) -> tuple[dict, dict] | None:
    """Run every planned condition (each distinct mask once) and return (eval, headline) dicts.
    `workers`: processes for the masked conditions (None: `mask_workers`); results do not depend on it.
    `max_length` (model.max_length): dialogues whose prompt would exceed it are cut by
    truncation.cut_dialogues, reported in eval.json's `truncated`.
    `schedule`: run only some masked conditions here (None returned on all but the process that
    combines them), resume finished ones. `train_name`, `test_name`: the tables' names in errors.
    `p_active` [layers, neurons]: P(active) over all train tokens (selection.overall_activation_probability),
    which matched controls are drawn by; needed when eval.controls has `matched`."""
    labels = test_labels(test_df, test_name)
    plan = plan_conditions(neurons, eval_params, top_rate, len(decoder_layers(lm.model)), p_active)
    engine, prompt_format, truncation = _classifier(lm, train_df, test_df, eval_params, plan, batch_size=batch_size,
                                                    max_length=max_length, train_name=train_name)
    # The unmodified mask (empty key) is first in the plan.
    groups = list(unique_masks(plan).values())
    runs = _run_masks(lm, engine, [Mask(members[0].neurons, members[0].scale) for members in groups[1:]], progress=progress, workers=workers,
                      schedule=schedule)
    if runs is None:
        return None
    true_idx = torch.tensor([EMOTION_INDEX[label] for label in labels], dtype=torch.long)
    results, effects, summary, outputs = _scored(plan, groups, runs, true_idx, eval_params)
    naive = engine.naive_tokens(len(plan) - 1)  # every condition by id, each from scratch
    base = results["unmodified"]
    n_per = torch.bincount(true_idx, minlength=len(EMOTIONS))
    chance = chance_level(n_per)
    conditions = [condition.record() | results[condition.id] | effects.get(condition.id, {}) for condition in plan]
    draw_null = draw_null_record(lm, engine, plan, outputs, eval_params, top_rate, neurons.neurons_per_layer,
                                 p_active, workers=workers, progress=progress)
    dose_response = dose_response_record({c["id"]: c for c in conditions}, eval_params, top_rate, summary["test_effect"])
    keyword_control = None
    if eval_params.keyword_control:
        keyword_control = _keyword_control(
            lm, train_df, test_df, plan, groups, true_idx, eval_params, top_rate, conditions,
            batch_size=batch_size, max_length=max_length, progress=progress, workers=workers, train_name=train_name)
    evaluation = eval_record(
        model=lm.name, method=eval_params.method, shots=eval_params.shots,
        shot_selection=eval_params.shot_selection, shot_instruction=eval_params.shot_instruction,
        label_format=eval_params.label_format, calibrate=eval_params.calibrate,
        recalibrate=eval_params.recalibrate, prompt_format=prompt_format, engine=engine.engine, n_test=len(labels),
        chance=round(chance, 4), n_per_emotion={e: int(n_per[i]) for i, e in enumerate(EMOTIONS)},
        baseline_above_chance=clearly_above_chance(tuple(base["ci95"]["overall"]), chance),
        tokens={"computed": int(sum(tokens for *_, tokens in runs)), "naive": int(naive)},
        effects=summary, conditions=conditions,
        truncated=None if truncation is None else truncation.record(), keyword_control=keyword_control,
        draw_null=draw_null, dose_response=dose_response,
    )
    return evaluation, headline(results, top_rate, eval_params.control_draws)


def _scored(plan: list[Condition], groups: list[list[Condition]], runs: list[tuple], true_idx: torch.Tensor,
            eval_params: EvalParams) -> tuple[dict[str, dict], dict[str, dict], dict, dict[str, tuple]]:
    """Each condition's metrics (by id, from its mask group's run), paired effects, their summary,
    and its run's (predicted, label scores) by id."""
    results: dict[str, dict] = {}
    outputs: dict[str, tuple[list[str | None], torch.Tensor | None]] = {}
    for (predicted, scores, _), members in zip(runs, groups):
        metrics = condition_metrics(true_idx, predicted, eval_params)
        for condition in members:
            results[condition.id] = metrics
            outputs[condition.id] = (predicted, scores)
    effects, summary = paired_effects(plan, outputs, true_idx, eval_params)
    return results, effects, summary, outputs


def _keyword_control(lm: LoadedModel, train_df: pl.DataFrame, test_df: pl.DataFrame, plan: list[Condition],
                     groups: list[list[Condition]], true_idx: torch.Tensor, eval_params: EvalParams, top_rate: float,
                     with_words: list[dict], *, batch_size: int, max_length: int | None, progress: bool,
                     workers: int | None, train_name: str) -> dict:
    """Every condition again on the test dialogues with their NRC cue words replaced (same shots,
    calibration and masks), in this process (not sharded or resumed), and keyword_control_record."""
    cues = cue_words()
    dialogues = test_df["dialogue"].to_list()
    replaced, removal = removal_record(dialogues, cues)
    if getattr(lm.tokenizer, "is_fast", False):  # the tokens each dialogue lost (fast tokenizers' offsets)
        lost = cue_token_counts(lm.tokenizer, dialogues, cues)
        removal["tokens_lost"] = {"total": sum(lost), "per_dialogue": lost,
                                  "dialogues_by_tokens": {str(k): lost.count(k) for k in sorted(set(lost))}}
    cue_free = test_df.with_columns(pl.Series("dialogue", replaced, dtype=pl.String))
    engine, _, _ = _classifier(lm, train_df, cue_free, eval_params, plan, batch_size=batch_size, max_length=max_length,
                               train_name=train_name)
    runs = _run_masks(lm, engine, [Mask(members[0].neurons, members[0].scale) for members in groups[1:]], progress=progress, workers=workers,
                      schedule=None)
    assert runs is not None  # no schedule: this process runs every mask
    results, effects, _, _ = _scored(plan, groups, runs, true_idx, eval_params)
    without_words = [condition.record() | results[condition.id] | effects.get(condition.id, {}) for condition in plan]
    record = keyword_control_record(with_words, without_words, top_rate, eval_params.control_draws, removal,
                                    eval_params.controls[0])
    record["tokens_computed"] = int(sum(tokens for *_, tokens in runs))
    return record
