"""mask-eval's body: every condition through one classifier, a chunk of the test dialogues at a
time, and the eval.json / headline.json dictionaries of docs/CONTRACTS.md. Its parts: shots.py (the
split's labels, the in-context shots), calibration.py, prompt_budget.py, chunking.py (the chunks),
mask_pool.py (the forked workers), condition_metrics.py, exp_metrics.py (headline.json),
draw_null.py (the draw-level null), dose_response.py (graded masking's summary)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import polars as pl
import torch

from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.evaluate.calibration import calibration_dialogues
from emoneurons.evaluate.chunking import bytes_per_token, chunked_rows, row_lengths, rows_key
from emoneurons.evaluate.classify import Mask, MaskedClassifier, naive_tokens, tokens_after_row
from emoneurons.evaluate.condition_metrics import condition_metrics, paired_effects
from emoneurons.evaluate.conditions import Condition, first_masked_layers, plan_conditions, unique_masks
from emoneurons.evaluate.dose_response import dose_response_record
from emoneurons.evaluate.draw_null import NullDraws
from emoneurons.evaluate.exp_metrics import headline
from emoneurons.evaluate.keyword_control import keyword_control_record
from emoneurons.evaluate.mask_pool import classify_masks, map_parent_large_blocks, mask_workers
from emoneurons.evaluate.prompt_budget import dialogue_budget
from emoneurons.evaluate.shots import TrainSplit, draw_shots, test_labels
from emoneurons.io.eval_file import eval_record
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.model.architecture import decoder_layers
from emoneurons.model.loading import LoadedModel
from emoneurons.params import EvalParams
from emoneurons.stats.metrics import chance_level, clearly_above_chance
from emoneurons.text.chat_prompt import ChatPrompt, label_ids
from emoneurons.text.classification_prompt import classification_prompt
from emoneurons.text.cue_removal import cue_token_counts, removal_record
from emoneurons.text.nrc_lexicon import cue_words
from emoneurons.text.prompt_format import ResolvedPromptFormat
from emoneurons.text.truncation import Truncation, cut_dialogues


class MaskEvaluation(NamedTuple):
    """What evaluate_masking returns: eval.json's and headline.json's records, and the plan they
    ran (every condition by id, planned once: the stage checks the records against it)."""

    evaluation: dict
    headline: dict
    plan: list[Condition]


class MaskSchedule(Protocol):
    """Which masked conditions this process runs, and what it keeps across runs and processes
    (runtime.resume.ConditionSchedule: shards over ranks, a checkpoint per condition and chunk of
    the test dialogues, gather on rank 0). A run is the tuple classify_masks gives for one mask on
    one chunk, kept and passed on whole; indices UNMODIFIED and DRAWS are the unmodified run's and
    the draw-level null's (the main process's only)."""

    processes: int
    main: bool

    def start(self, n_masks: int, chunks: list[str]) -> tuple[list[int], dict[tuple[int, int], tuple]]: ...

    def finished(self, chunk: int, index: int, run: tuple) -> None: ...

    def combine(self, runs: dict[int, tuple]) -> dict[int, tuple] | None: ...


UNMODIFIED = -1  # the unmodified run's index among a chunk's saved runs
DRAWS = -2  # the draw-level null's extra draws' index (their effects summed over the chunk)


@dataclass
class _TestRun:
    """The classifier's prompt over the test dialogues (cut to max_length) and the calibration
    dialogues, the test rows in chunks (chunking.py), and what was cut."""

    lm: LoadedModel
    prompt: ChatPrompt
    prompt_format: ResolvedPromptFormat
    dialogues: list[str]
    reference: list[str]
    chunks: list[list[int]]
    truncation: Truncation | None
    eval_params: EvalParams
    batch_size: int
    boundaries: set[int]
    lengths: list[int]  # each test row's tokens (dialogue and prompt suffix)
    after: int  # tokens a naive run feeds after a row (classify.tokens_after_row)
    engine_name: str | None = None  # the engine's `engine` (layered | plain), once one is built

    def engine(self, rows: Sequence[int]) -> MaskedClassifier:
        """The engine over one chunk's rows (in row order) and every calibration dialogue."""
        ev = self.eval_params
        engine = MaskedClassifier(
            self.lm, self.prompt, [self.dialogues[i] for i in rows], ev.method, batch_size=self.batch_size,
            max_new_tokens=ev.max_new_tokens, boundaries=self.boundaries, label_format=ev.label_format,
            reference=self.reference, recalibrate=ev.recalibrate,
        )
        self.engine_name = engine.engine
        return engine

    def naive_tokens(self, masked_runs: int) -> int:
        """Every condition by id, each from scratch over all test rows (classify.naive_tokens)."""
        reference = row_lengths(self.lm.tokenizer, self.reference, len(self.prompt.suffix))
        return naive_tokens(len(self.prompt.prefix), self.lengths, reference, self.after, masked_runs=masked_runs,
                            recalibrate=self.eval_params.recalibrate)


def _test_run(lm: LoadedModel, train: TrainSplit, test_df: pl.DataFrame, eval_params: EvalParams,
              plan: list[Condition], *, prompt_format: ResolvedPromptFormat, batch_size: int, max_length: int | None,
              train_name: str) -> _TestRun:
    """The in-context shots' prompt, the calibration dialogues and the test dialogues (both cut
    to max_length when given), and the test rows' chunks."""
    shots = draw_shots(train, eval_params.shots, eval_params.seed, eval_params.shot_selection, train_name=train_name)
    prompt = classification_prompt(lm.tokenizer, shots, eval_params.shot_instruction, prompt_format=prompt_format)
    test_dialogues = test_df["dialogue"].to_list()
    reference = calibration_dialogues(train, eval_params, shots, train_name=train_name)
    truncation = None
    if max_length is not None:
        truncation = Truncation(max_length, dialogue_budget(lm, prompt, eval_params, max_length))
        test_dialogues = cut_dialogues(lm.tokenizer, test_dialogues, truncation)
        reference = cut_dialogues(lm.tokenizer, reference, truncation)
    boundaries = first_masked_layers(plan)
    # Layer reuse (and so kept states) only when scoring: generate runs every mask from layer 0.
    kept = len({k for k in boundaries if 0 < k < len(decoder_layers(lm.model))}) if eval_params.method == "score" else 0
    labels = label_ids(lm.tokenizer, eval_params.label_format)
    lengths = row_lengths(lm.tokenizer, test_dialogues, len(prompt.suffix))
    # The label continuation's states are kept too (score): its tokens count per row.
    chunks = chunked_rows(lengths, batch_size, bytes_per_token(lm, kept), extra_tokens=tokens_after_row(labels, "score", 0))
    return _TestRun(lm, prompt, prompt_format, test_dialogues, reference, chunks, truncation, eval_params, batch_size,
                    boundaries, lengths, tokens_after_row(labels, eval_params.method, eval_params.max_new_tokens))


def _assembled(n: int, parts: list[tuple[Sequence[int], tuple]]) -> tuple[list[str | None], torch.Tensor | None, int]:
    """One condition's (predicted, scores, tokens computed) over all n test rows from its chunks' runs."""
    predicted: list[str | None] = [None] * n
    scores: torch.Tensor | None = None
    tokens = 0
    for rows, (part_predicted, part_scores, part_tokens) in parts:
        for row, label in zip(rows, part_predicted):
            predicted[row] = label
        if part_scores is not None:
            if scores is None:
                scores = torch.full((n, part_scores.shape[1]), float("nan"), dtype=part_scores.dtype)
            scores[list(rows)] = part_scores
        tokens += part_tokens
    return predicted, scores, tokens


def _run_masks(test: _TestRun, masks: list[Mask], *, progress: bool, workers: int | None,
               schedule: MaskSchedule | None, draws: NullDraws | None = None) -> tuple[list[tuple], tuple[list[float], int]] | None:
    """(predicted, scores, tokens computed) of the unmodified run, then of each mask, over every
    test row, and `draws`' extra runs (per draw its effect summed over the test dialogues, and their
    tokens computed; main process only); None on a process that does not combine the schedule's
    shares. Chunk by chunk: the unmodified run first, in process (it keeps the states that the
    masks start from), then the masks and the draws, in forked workers; a chunk whose runs are all
    saved is skipped."""
    from tqdm import tqdm

    mine, saved = list(range(len(masks))), {}
    if schedule is not None:
        mine, saved = schedule.start(len(masks), [rows_key(rows) for rows in test.chunks])
    main = schedule is None or schedule.main
    draws = draws if main and draws is not None and len(draws.masks) else None
    # Under a launcher each rank runs its share in process: no fork beside the process group.
    if workers is None:
        workers = mask_workers(test.lm, len(mine)) if schedule is None or schedule.processes == 1 else 1
    map_parent_large_blocks(workers, len(test.chunks))  # before the first unmodified run: the same heap each run
    wanted = [UNMODIFIED] * main + mine
    chunks = len(test.chunks)
    cost = {index: 1 for index in wanted} | ({DRAWS: len(draws.masks)} if draws else {})
    total = sum(len(rows) * runs for c, rows in enumerate(test.chunks) for index, runs in cost.items() if (c, index) not in saved)
    parts: dict[int, list[tuple[Sequence[int], tuple]]] = {index: [] for index in wanted}
    null_totals, null_tokens = [0.0] * (len(draws.masks) if draws else 0), 0
    with tqdm(total=total, desc=f"mask-eval dialogues x runs ({chunks} chunk{'s' * (chunks > 1)}, {workers} "
              f"worker{'s' * (workers > 1)})", unit="dlg", file=sys.stderr, disable=not progress) as bar:
        for c, rows in enumerate(test.chunks):
            todo = [index for index in mine if (c, index) not in saved]
            unmodified_todo = main and (c, UNMODIFIED) not in saved
            draws_todo = draws is not None and (c, DRAWS) not in saved
            if todo or unmodified_todo or draws_todo:
                engine = test.engine(rows)
                result = engine.classify()  # keeps the chunk's states
                unmodified = (result.predicted, result.scores, result.tokens_computed)
                if unmodified_todo:
                    saved[(c, UNMODIFIED)] = unmodified
                    if schedule is not None:
                        schedule.finished(c, UNMODIFIED, unmodified)
                    bar.update(len(rows))
                on_result = None if schedule is None else (lambda index, run, c=c: schedule.finished(c, index, run))
                ran = classify_masks(engine, masks, workers, bar, todo, on_result, step=len(rows))
                saved |= {(c, index): ran[index] for index in todo}
                if draws_todo:
                    saved[(c, DRAWS)] = draws.run_chunk(engine, unmodified, workers, bar, len(rows))
                    if schedule is not None:
                        schedule.finished(c, DRAWS, saved[(c, DRAWS)])
                del engine, result, ran  # this chunk's kept states go before the next chunk's are made
            for index in wanted:
                parts[index].append((rows, saved.pop((c, index))))
            if draws is not None:
                totals, tokens = saved.pop((c, DRAWS))
                null_totals = [a + b for a, b in zip(null_totals, totals)]
                null_tokens += tokens
    runs = {index: _assembled(len(test.dialogues), chunk_runs) for index, chunk_runs in parts.items()}
    if schedule is not None:
        combined = schedule.combine({i: runs[i] for i in mine})
        if combined is None:
            return None
        runs |= combined
    return [runs[UNMODIFIED], *(runs[i] for i in range(len(masks)))], (null_totals, null_tokens)


def evaluate_masking(
    lm: LoadedModel,
    train: TrainSplit,
    test_df: pl.DataFrame,
    neurons: NeuronsFile,
    eval_params: EvalParams,
    top_rate: float,
    *,
    prompt_format: ResolvedPromptFormat,
    batch_size: int,
    max_length: int | None,
    progress: bool = True,
    workers: int | None = None,
    schedule: MaskSchedule | None = None,
    train_name: str = "train split",
    test_name: str = "test split",
    p_active: torch.Tensor | None = None,
) -> MaskEvaluation | None:
    """Plan the conditions once, run each (each distinct mask once) and return the eval and headline
    records with the plan (MaskEvaluation).
    `workers`: processes for the masked conditions (None: `mask_workers`); results do not depend on it.
    `prompt_format`: eval.prompt_format resolved for `lm` where it was loaded (chat or plain).
    `batch_size`, `max_length` (model.batch_size, model.max_length; None: nothing is cut): dialogues
    whose prompt would exceed max_length are cut by truncation.cut_dialogues, reported in eval.json's `truncated`.
    `schedule`: run only some masked conditions here (None returned on all but the process that
    combines them), resume finished ones. `train_name`, `test_name`: the tables' names in errors.
    `p_active` [layers, neurons]: P(active) over all train tokens (selection.overall_activation_probability),
    which matched controls are drawn by; needed when eval.controls has `matched`."""
    labels = test_labels(test_df, test_name)
    plan = plan_conditions(neurons, eval_params, top_rate, len(decoder_layers(lm.model)), p_active)
    test = _test_run(lm, train, test_df, eval_params, plan, prompt_format=prompt_format, batch_size=batch_size,
                     max_length=max_length, train_name=train_name)
    # The unmodified mask (empty key) is first in the plan.
    groups = list(unique_masks(plan).values())
    draws = NullDraws(plan, eval_params, top_rate, neurons.neurons_per_layer, p_active) if eval_params.null_draws else None
    ran = _run_masks(test, [Mask(members[0].neurons, members[0].scale) for members in groups[1:]], progress=progress,
                     workers=workers, schedule=schedule, draws=draws)
    if ran is None:
        return None
    runs, (null_totals, null_tokens) = ran
    true_idx = torch.tensor([EMOTION_INDEX[label] for label in labels], dtype=torch.long)
    results, effects, summary, outputs = _scored(plan, groups, runs, true_idx, eval_params)
    naive = test.naive_tokens(len(plan) - 1)  # every condition by id, each from scratch
    engine_name = test.engine_name or test.engine(test.chunks[0]).engine  # every chunk restored: built only to say it
    base = results["unmodified"]
    n_per = torch.bincount(true_idx, minlength=len(EMOTIONS))
    chance = chance_level(n_per)
    conditions = [condition.record() | results[condition.id] | effects.get(condition.id, {}) for condition in plan]
    draw_null = None if draws is None else draws.record(outputs, null_totals, null_tokens, len(labels))
    dose_response = dose_response_record({c["id"]: c for c in conditions}, eval_params, top_rate, summary["test_effect"])
    keyword_control = None
    if eval_params.keyword_control:
        keyword_control = _keyword_control(
            lm, train, test_df, plan, groups, true_idx, eval_params, top_rate, conditions,
            prompt_format=prompt_format, batch_size=batch_size, max_length=max_length, progress=progress, workers=workers,
            train_name=train_name)
    evaluation = eval_record(
        model=lm.name, method=eval_params.method, shots=eval_params.shots,
        shot_selection=eval_params.shot_selection, shot_instruction=eval_params.shot_instruction,
        label_format=eval_params.label_format, calibrate=eval_params.calibrate,
        recalibrate=eval_params.recalibrate, prompt_format=test.prompt_format, engine=engine_name, n_test=len(labels),
        chance=round(chance, 4), n_per_emotion={e: int(n_per[i]) for i, e in enumerate(EMOTIONS)},
        baseline_above_chance=clearly_above_chance(tuple(base["ci95"]["overall"]), chance),
        tokens={"computed": int(sum(tokens for *_, tokens in runs)), "naive": int(naive)},
        effects=summary, conditions=conditions,
        truncated=None if test.truncation is None else test.truncation.record(), keyword_control=keyword_control,
        draw_null=draw_null, dose_response=dose_response,
    )
    return MaskEvaluation(evaluation, headline(results, top_rate, eval_params.control_draws, eval_params.controls[0]), plan)


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


def _keyword_control(lm: LoadedModel, train: TrainSplit, test_df: pl.DataFrame, plan: list[Condition],
                     groups: list[list[Condition]], true_idx: torch.Tensor, eval_params: EvalParams, top_rate: float,
                     with_words: list[dict], *, prompt_format: ResolvedPromptFormat, batch_size: int,
                     max_length: int | None, progress: bool,
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
    test = _test_run(lm, train, cue_free, eval_params, plan, prompt_format=prompt_format, batch_size=batch_size,
                     max_length=max_length, train_name=train_name)
    ran = _run_masks(test, [Mask(members[0].neurons, members[0].scale) for members in groups[1:]], progress=progress,
                     workers=workers, schedule=None)
    assert ran is not None  # no schedule: this process runs every mask
    runs = ran[0]
    results, effects, _, _ = _scored(plan, groups, runs, true_idx, eval_params)
    without_words = [condition.record() | results[condition.id] | effects.get(condition.id, {}) for condition in plan]
    record = keyword_control_record(with_words, without_words, top_rate, eval_params.control_draws, removal,
                                    eval_params.controls[0])
    record["tokens_computed"] = int(sum(tokens for *_, tokens in runs))
    return record
