"""mask-eval's body: in-context shots from train, every condition through one classifier, and the
eval.json / headline.json dictionaries of docs/CONTRACTS.md."""

from __future__ import annotations

import multiprocessing
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import polars as pl
import torch

from emoneurons.cue_removal import cue_token_counts, removal_record
from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.evaluate.classify import MaskedClassifier
from emoneurons.evaluate.conditions import (
    Condition, control_id, first_masked_layers, mask_id, plan_conditions, unique_masks,
)
from emoneurons.evaluate.keyword_control import keyword_control_record
from emoneurons.evaluate.effects import ALPHA, RULE, SIGN_FLIPS, condition_effect, label_log_probs, specificity
from emoneurons.evaluate.metrics import (
    UNPARSEABLE, accuracy_ci, accuracy_per_emotion, chance_level, clearly_above_chance, confusion_matrix,
    overall_accuracy, unparseable_counts,
)
from emoneurons.prompts.classification import classification_prompt
from emoneurons.prompts.chat import CONTENT_FREE_DIALOGUE, label_ids
from emoneurons.neurons.masking import decoder_layers
from emoneurons.model.loading import LoadedModel
from emoneurons.nrc_lexicon import cue_words
from emoneurons.params import EvalParams
from emoneurons.prompt_format import resolve_prompt_format
from emoneurons.truncation import Truncation, cut_dialogues


class EvalDataError(ValueError):
    """The split cannot be evaluated (empty, an emotion missing, too few shots), in one line."""


def _labels(df: pl.DataFrame, name: str) -> list[str]:
    column = "label" if "label" in df.columns else "theme"
    if column not in df.columns or "dialogue" not in df.columns:
        raise EvalDataError(f"{name}: needs columns `dialogue` and `label` (has: {', '.join(df.columns)})")
    return df[column].to_list()


def draw_shots(train: pl.DataFrame, shots: int, seed: int, selection: str = "random", *,
               train_name: str = "train split") -> list[tuple[str, str]]:
    """`shots` (dialogue, emotion) examples per emotion from the train split (random: a seeded
    draw; shortest: the shortest by characters, ties by row order), in a seeded shuffled order (so
    the last example, nearest the question, is not always the same emotion). `train_name` names
    the table in errors (the stage passes its path)."""
    if selection not in ("random", "shortest"):
        raise ValueError(f"shot_selection {selection!r}: allowed: random, shortest")
    if shots == 0:
        return []
    labels = _labels(train, train_name)
    dialogues = train["dialogue"].to_list()
    rng = random.Random(seed)
    chosen = []
    for emotion in EMOTIONS:
        pool = [i for i, label in enumerate(labels) if label == emotion]
        if len(pool) < shots:
            raise EvalDataError(f"{train_name}: {len(pool)} {emotion} dialogues, eval.shots needs {shots}; "
                                "lower eval.shots or generate more dialogues")
        picked = sorted(pool, key=lambda i: (len(dialogues[i]), i))[:shots] if selection == "shortest" else rng.sample(pool, shots)
        chosen += [(dialogues[i], emotion) for i in picked]
    rng.shuffle(chosen)
    return chosen


def calibration_dialogues(train: pl.DataFrame, eval_params: EvalParams, shots: list[tuple[str, str]], *,
                          train_name: str = "train split") -> list[str]:
    """The reference dialogues `eval.calibrate` divides by: none; the content-free dialogue; or
    `calibration_per_emotion` train dialogues per emotion, seeded, never an in-context example."""
    if eval_params.calibrate == "none":
        return []
    if eval_params.calibrate == "content_free":
        return [CONTENT_FREE_DIALOGUE]
    labels = _labels(train, train_name)
    dialogues = train["dialogue"].to_list()
    used = {dialogue for dialogue, _ in shots}
    rng = random.Random(f"calibrate-{eval_params.seed}")
    chosen = []
    for emotion in EMOTIONS:
        pool = [d for d, label in zip(dialogues, labels) if label == emotion and d not in used]
        if len(pool) < eval_params.calibration_per_emotion:
            raise EvalDataError(f"{train_name}: {len(pool)} {emotion} dialogues besides the shots, "
                                f"eval.calibration_per_emotion needs {eval_params.calibration_per_emotion}; "
                                "lower it, use eval.calibrate: content_free, or generate more dialogues")
        chosen += rng.sample(pool, eval_params.calibration_per_emotion)
    return chosen


def _condition_metrics(true_idx: torch.Tensor, predicted: list[str | None], eval_params: EvalParams) -> dict:
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


def headline(conditions: Mapping[str, dict], top_rate: float, control_draws: int) -> dict[str, float]:
    """The few numbers `dvc exp show` compares (docs/CONTRACTS.md)."""
    base = conditions["unmodified"]["accuracy"]
    out = {"accuracy_unmodified": base["overall"]}
    out |= {f"accuracy_unmodified_{e}": base[e] for e in EMOTIONS}
    for e in EMOTIONS:
        cid = mask_id(e, top_rate, "all")
        masked = conditions[cid]["accuracy"][e]
        out[f"accuracy_masked_{e}"] = masked
        out[f"drop_{e}"] = round(base[e] - masked, 4)
        if control_draws:
            drops = [base[e] - conditions[control_id(cid, d)]["accuracy"][e] for d in range(control_draws)]
            out[f"control_drop_{e}"] = round(sum(drops) / len(drops), 4)
    return out


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
    masks = [c for c in plan if c.kind == "mask"]
    controls = {c.id: [test_effects[control_id(c.id, d)] for d in range(eval_params.control_draws)] for c in masks}
    tested = specificity({c.id: test_effects[c.id] for c in masks}, controls, {c.id: c.n_neurons for c in masks},
                         eval_params.bootstrap, eval_params.seed)
    for cid, record in tested.items():
        records[cid]["vs_control"] = record
    m = sum(record["p"] is not None for record in tested.values())
    summary = {
        "measure": "log p(label) over the six labels from the decision rule's scores (calibrated when eval.calibrate asks); "
                   "effect = condition minus unmodified on the same dialogue" if base_lp is not None else
                   "generate: change in answering the masked emotion (1/0) per dialogue; accuracy with McNemar's exact test",
        "test_effect": "delta_masked" if base_lp is not None else "masked_answer",
        "alternative": "less", "alpha": ALPHA, "sign_flips": SIGN_FLIPS, "corrected_over": m,
        "rule": RULE.format(flips=SIGN_FLIPS, exact=SIGN_FLIPS.bit_length() - 1, m=m, alpha=ALPHA),
    }
    return records, summary


# The forked workers' view of the parent's engine and masks (set just before the fork, read-only there).
_SHARED: dict = {}


def mask_workers(lm: LoadedModel, n_masks: int) -> int:
    """How many processes run the masked conditions: on a Linux CPU one per intra-op thread (at most
    8), each single-threaded; else 1 (in process). Single-threaded workers beat one process with
    OpenMP threads: the many small element-wise ops of a forward pass pay a barrier per op, which
    costs milliseconds whenever another process holds a core (2x slower on a shared 2-core machine)."""
    if lm.device.type != "cpu" or not sys.platform.startswith("linux"):
        return 1
    return max(1, min(torch.get_num_threads(), 8, n_masks))


def _worker_start(threads: int) -> None:
    torch.set_num_threads(threads)


def _worker_classify(index: int) -> tuple[int, list[str | None], torch.Tensor | None, int]:
    result = _SHARED["engine"].classify(_SHARED["masks"][index])
    return index, result.predicted, result.scores, result.tokens_computed


def _classify_masks(
    engine: MaskedClassifier, masks: list[dict], workers: int, bar, todo: Sequence[int] | None = None,
    on_result: Callable[[int, tuple], None] | None = None,
) -> list[tuple[list[str | None], torch.Tensor | None, int]]:
    """(predicted, label scores, tokens computed) of each mask in `todo` (default: all; None for the
    others), after the unmodified run (whose kept states the forked workers inherit); the costliest
    masks (lowest start layer) go first. on_result(index, that tuple) as each finishes."""
    out: list = [None] * len(masks)
    todo = range(len(masks)) if todo is None else todo
    if workers <= 1:
        for index in todo:
            result = engine.classify(masks[index])
            out[index] = (result.predicted, result.scores, result.tokens_computed)
            if on_result is not None:
                on_result(index, out[index])
            bar.update(1)
        return out
    order = sorted(todo, key=lambda i: engine.start_layer(masks[i]))
    threads = max(1, torch.get_num_threads() // workers)
    _SHARED.update(engine=engine, masks=masks)
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_start, initargs=(threads,)) as pool:
            for index, predicted, scores, tokens in pool.imap_unordered(_worker_classify, order):
                out[index] = (predicted, scores, tokens)
                if on_result is not None:
                    on_result(index, out[index])
                bar.update(1)
    finally:
        _SHARED.clear()
    return out


def dialogue_budget(lm: LoadedModel, prompt, eval_params: EvalParams, max_length: int) -> int:
    """Dialogue tokens that fit in max_length beside the prompt (prefix with the shots, suffix)
    and the answer (the longest label, or max_new_tokens when generating)."""
    answer = (
        eval_params.max_new_tokens if eval_params.method == "generate"
        else max(len(ids) for ids in label_ids(lm.tokenizer, eval_params.label_format))
    )
    budget = max_length - len(prompt.prefix) - len(prompt.suffix) - answer
    if budget < 1:
        raise EvalDataError(
            f"model.max_length: {max_length} tokens leave no room for a dialogue beside the classification "
            f"prompt ({len(prompt.prefix) + len(prompt.suffix)} tokens with eval.shots={eval_params.shots}) and "
            f"the answer ({answer}); raise model.max_length or lower eval.shots"
        )
    return budget


class ConditionSchedule(Protocol):
    """Which masked conditions this process runs, and what it keeps across runs and processes
    (resume.ConditionSchedule: shards over ranks, a checkpoint per condition, gather on rank 0).
    A run is the tuple _classify_masks gives for one mask, kept and passed on whole."""

    processes: int

    def start(self, n_masks: int) -> tuple[list[int], dict[int, tuple]]: ...

    def finished(self, index: int, run: tuple) -> None: ...

    def combine(self, runs: dict[int, tuple]) -> dict[int, tuple] | None: ...


def _test_labels(test_df: pl.DataFrame, test_name: str) -> list[str]:
    """The test table's labels, checked: some rows, every emotion present, no unknown label."""
    if test_df.height == 0:
        raise EvalDataError(f"{test_name}: no dialogues to evaluate")
    labels = _labels(test_df, test_name)
    missing = [e for e in EMOTIONS if e not in labels]
    if missing:
        raise EvalDataError(f"{test_name}: no {', '.join(missing)} dialogues; every emotion needs at least one")
    unknown = sorted({label for label in labels if label not in EMOTION_INDEX})
    if unknown:
        raise EvalDataError(f"{test_name}: unknown label {unknown[0]!r}; allowed: {', '.join(EMOTIONS)}")
    return labels


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


def _run_masks(lm: LoadedModel, engine: MaskedClassifier, masks: list[dict], *, progress: bool, workers: int | None,
               schedule: ConditionSchedule | None) -> list[tuple] | None:
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
        finished = _classify_masks(engine, masks, workers, bar, todo, None if schedule is None else schedule.finished)
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
    neurons_json: Mapping,
    eval_params: EvalParams,
    top_rate: float,
    *,
    batch_size: int = 16,
    progress: bool = True,
    workers: int | None = None,
    max_length: int | None = None,
    schedule: ConditionSchedule | None = None,
    train_name: str = "train split",
    test_name: str = "test split",
) -> tuple[dict, dict] | None:
    """Run every planned condition (each distinct mask once) and return (eval, headline) dicts.
    `workers`: processes for the masked conditions (None: `mask_workers`); results do not depend on it.
    `max_length` (model.max_length): dialogues whose prompt would exceed it are cut by
    truncation.cut_dialogues, reported in eval.json's `truncated`.
    `schedule`: run only some masked conditions here (None returned on all but the process that
    combines them), resume finished ones. `train_name`, `test_name`: the tables' names in errors."""
    labels = _test_labels(test_df, test_name)
    plan = plan_conditions(neurons_json, eval_params, top_rate, len(decoder_layers(lm.model)))
    engine, prompt_format, truncation = _classifier(lm, train_df, test_df, eval_params, plan, batch_size=batch_size,
                                                    max_length=max_length, train_name=train_name)
    # The unmodified mask (empty key) is first in the plan.
    groups = list(unique_masks(plan).values())
    runs = _run_masks(lm, engine, [members[0].neurons for members in groups[1:]], progress=progress, workers=workers,
                      schedule=schedule)
    if runs is None:
        return None
    true_idx = torch.tensor([EMOTION_INDEX[label] for label in labels], dtype=torch.long)
    results, effects, summary = _scored(plan, groups, runs, true_idx, eval_params)
    naive = engine.naive_tokens(len(plan) - 1)  # every condition by id, each from scratch
    base = results["unmodified"]
    n_per = torch.bincount(true_idx, minlength=len(EMOTIONS))
    chance = chance_level(n_per)
    evaluation = {
        "model": lm.name, "method": eval_params.method, "shots": eval_params.shots,
        "shot_selection": eval_params.shot_selection, "shot_instruction": eval_params.shot_instruction,
        "label_format": eval_params.label_format, "calibrate": eval_params.calibrate,
        "recalibrate": eval_params.recalibrate, "prompt_format": prompt_format, "engine": engine.engine, "n_test": len(labels),
        "chance": round(chance, 4), "n_per_emotion": {e: int(n_per[i]) for i, e in enumerate(EMOTIONS)},
        "baseline_above_chance": clearly_above_chance(tuple(base["ci95"]["overall"]), chance),
        "tokens": {"computed": int(sum(tokens for *_, tokens in runs)), "naive": int(naive)},
        "effects": summary,
        "conditions": [condition.record() | results[condition.id] | effects.get(condition.id, {}) for condition in plan],
    }
    if truncation is not None:
        evaluation["truncated"] = truncation.record()
    if eval_params.keyword_control:
        evaluation["keyword_control"] = _keyword_control(
            lm, train_df, test_df, plan, groups, true_idx, eval_params, top_rate, evaluation["conditions"],
            batch_size=batch_size, max_length=max_length, progress=progress, workers=workers, train_name=train_name)
    return evaluation, headline(results, top_rate, eval_params.control_draws)


def _scored(plan: list[Condition], groups: list[list[Condition]], runs: list[tuple], true_idx: torch.Tensor,
            eval_params: EvalParams) -> tuple[dict[str, dict], dict[str, dict], dict]:
    """Each condition's metrics (by id, from its mask group's run), paired effects and their summary."""
    results: dict[str, dict] = {}
    outputs: dict[str, tuple[list[str | None], torch.Tensor | None]] = {}
    for (predicted, scores, _), members in zip(runs, groups):
        metrics = _condition_metrics(true_idx, predicted, eval_params)
        for condition in members:
            results[condition.id] = metrics
            outputs[condition.id] = (predicted, scores)
    effects, summary = paired_effects(plan, outputs, true_idx, eval_params)
    return results, effects, summary


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
    runs = _run_masks(lm, engine, [members[0].neurons for members in groups[1:]], progress=progress, workers=workers,
                      schedule=None)
    assert runs is not None  # no schedule: this process runs every mask
    results, effects, _ = _scored(plan, groups, runs, true_idx, eval_params)
    without_words = [condition.record() | results[condition.id] | effects.get(condition.id, {}) for condition in plan]
    record = keyword_control_record(with_words, without_words, top_rate, eval_params.control_draws, removal)
    record["tokens_computed"] = int(sum(tokens for *_, tokens in runs))
    return record
