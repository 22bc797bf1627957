"""Steering: each emotion's neurons scaled by alpha while the model replies to neutral prompts;
the replies are classified by mask-eval's classifier (run unmodified), against the same alpha
on random neurons of the same per-layer counts (drawn as mask-eval draws its controls).

What is reported per emotion and alpha: the share of replies labelled with the steered emotion
and the mean log p(steered emotion | reply) (the classifier's label log-probability over the six
labels, calibrated as mask-eval calibrates), each as a shift from the unmodified model's replies
to the same prompts; and, when judges are configured (filter.judges, built as the filter stage
builds them), the share each judge labels with the steered emotion and its shift. Replies are
greedy, so a difference is the scaling's doing. Beside each shift, the coherence of the same
replies (evaluate/coherence.py): the unmodified model's log-likelihood per token of each reply and
its repeated word n-gram share, and whether the text broke against the unmodified replies'.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from tqdm import tqdm

from emoneurons.backends.hf_generate import generate_batch
from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.errors import EmoneuronsError
from emoneurons.evaluate.calibration import calibration_dialogues
from emoneurons.evaluate.classify import MaskedClassifier
from emoneurons.evaluate.coherence import CoherenceRule, ReplyCoherence, chat_reply_coherence, coherence_summary
from emoneurons.evaluate.conditions import control_seed, random_like
from emoneurons.evaluate.shots import TrainSplit, draw_shots
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.model.loading import LoadedModel
from emoneurons.model.special_tokens import eos_token_ids
from emoneurons.neurons.masking import neurons_by_layer, scale_neurons_per_row
from emoneurons.params import EvalParams, HFGenerationParams, SteerParams
from emoneurons.text.classification_prompt import classification_prompt
from emoneurons.text.prompt_format import ResolvedPromptFormat, prompt_text

if TYPE_CHECKING:
    from emoneurons.backends.judges import Judge


class SteerDataError(EmoneuronsError, ValueError):
    """The prompts file or the selection cannot be steered with, said in one line."""


def read_prompts(path: str | Path, n: int) -> list[str]:
    """The first `n` prompts of the file: one per line; blank lines and `#` comments skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SteerDataError(f"{path}: file not found") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if len(prompts) < n:
        raise SteerDataError(f"{path}: {len(prompts)} prompts, steer.prompts asks for {n}; allowed: 1..{len(prompts)}")
    return prompts[:n]


@dataclass(frozen=True)
class SteerCondition:
    emotion: str
    alpha: float
    control: bool
    draw: int | None
    neurons: dict[int, Tensor] = field(compare=False, repr=False)

    @property
    def n_neurons(self) -> int:
        return sum(int(idx.numel()) for idx in self.neurons.values())


def plan_steering(neurons: NeuronsFile, top_rate: float, params: SteerParams) -> list[SteerCondition]:
    """Per emotion with selected neurons (the selection at `top_rate`): each alpha on its neurons,
    then each alpha on each of `control_draws` random sets (one set per draw, the same for every alpha)."""
    selection = neurons.selection(top_rate)
    plan = []
    for emotion in EMOTIONS:
        by_layer = neurons_by_layer(selection.neurons.get(emotion, []))
        if not by_layer:
            continue
        plan += [SteerCondition(emotion, alpha, False, None, by_layer) for alpha in params.alphas]
        for draw in range(params.control_draws):
            drawn = random_like(by_layer, neurons.neurons_per_layer, control_seed(params.seed, f"steer-{emotion}-d{draw}"))
            plan += [SteerCondition(emotion, alpha, True, draw, drawn) for alpha in params.alphas]
    return plan


def steered_replies(lm: LoadedModel, prompts: Sequence[str], conditions: Sequence[tuple[Mapping[int, Tensor], float]], *,
                    max_new_tokens: int, batch_size: int, prompt_format: ResolvedPromptFormat, desc: str = "") -> list[list[str]]:
    """Greedy replies to `prompts` (one user turn each) under each (neurons, alpha) of `conditions`;
    rows of several conditions share a batch (`scale_neurons_per_row`): generation on a CPU costs
    about the same per step for 8 rows as for 64. A reply that reaches max_new_tokens is kept as
    it is: steering classifies what the model says, short replies by design, not dataset dialogues."""
    generation = HFGenerationParams(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)  # greedy: top_p unused
    rendered = [prompt_text(lm.tokenizer, (("user", prompt),), prompt_format) for prompt in prompts]
    eos = eos_token_ids(lm)
    rows = [(c, p) for c in range(len(conditions)) for p in range(len(prompts))]
    texts: list[str] = []
    with tqdm(total=len(rows), desc=desc, unit="reply", file=sys.stderr, disable=not desc) as bar:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            with scale_neurons_per_row(lm.model, [conditions[c] for c, _ in chunk]):
                texts += [text for text, *_ in generate_batch(lm, generation, [rendered[p] for _, p in chunk], [0] * len(chunk), eos, prompt_format)]
            bar.update(len(chunk))
    return [texts[c * len(prompts) : (c + 1) * len(prompts)] for c in range(len(conditions))]


def as_dialogue(prompt: str, reply: str) -> str:
    """A prompt and its reply in the dialogue format the classifier was shown (`A: ...` / `B: ...`)."""
    return f"A: {prompt}\nB: {' '.join(reply.split()) or '...'}"


def classify_replies(lm: LoadedModel, train: TrainSplit, eval_params: EvalParams, dialogues: Sequence[str],
                     batch_size: int, prompt_format: ResolvedPromptFormat, of: int | None = None) -> tuple[list[str | None], Tensor | None]:
    """mask-eval's classifier (its shots, calibration and method), unmodified, on `dialogues`:
    the predicted labels and the label log-probabilities [n, 6] (None with method generate).
    `of`: how many replies `dialogues` are the distinct ones of, for the progress bar."""
    shots = draw_shots(train, eval_params.shots, eval_params.seed, eval_params.shot_selection)
    prompt = classification_prompt(lm.tokenizer, shots, eval_params.shot_instruction, prompt_format=prompt_format)
    engine = MaskedClassifier(lm, prompt, dialogues, eval_params.method, batch_size=batch_size,
                              max_new_tokens=eval_params.max_new_tokens, label_format=eval_params.label_format,
                              reference=calibration_dialogues(train, eval_params, shots), recalibrate=eval_params.recalibrate)
    desc = f"classify {len(dialogues)} replies" if of is None else f"classify {len(dialogues)} distinct replies of {of}"
    with tqdm(total=len(engine.batches), desc=desc, unit="batch", file=sys.stderr) as bar:
        result = engine.classify(progress=bar)
    logp = None if result.scores is None else torch.log_softmax(result.scores.float(), dim=1)
    return result.predicted, logp


def _summary(predicted: Sequence[str | None], logp: Tensor | None, emotion: str) -> dict[str, float | None]:
    share = sum(p == emotion for p in predicted) / len(predicted)
    mean_logp = None if logp is None else float(logp[:, EMOTION_INDEX[emotion]].mean())
    return {"share": share, "logp": mean_logp}


def _shift(value: float | None, base: float | None) -> float | None:
    return None if value is None or base is None else round(value - base, 4)


def _share(labels: Sequence[str | None], emotion: str) -> float:
    """The share of `labels` that are `emotion` (no label, None, counts as another)."""
    return sum(label == emotion for label in labels) / len(labels)


def steering_record(prompts: Sequence[str], plan: Sequence[SteerCondition], predicted: Sequence[str | None],
                    logp: Tensor | None, replies: Sequence[str], selected: Mapping[str, int],
                    judge_labels: Mapping[str, Sequence[str | None]] | None = None,
                    coherence: ReplyCoherence | None = None, rule: CoherenceRule | None = None) -> dict[str, Any]:
    """steer.json's `unmodified` and `emotions` parts from the classified replies: the first
    len(prompts) are the unmodified model's, then len(prompts) per condition of `plan`.
    `judge_labels`: each judge's labels of the same replies, in the same order; `coherence`: both
    coherence measures of the same replies, summarised per condition against the unmodified
    replies' by `rule` (required with it)."""
    n = len(prompts)
    judge_labels = judge_labels or {}
    base_pred, base_logp = predicted[:n], None if logp is None else logp[:n]
    bases = {emotion: _summary(base_pred, base_logp, emotion) for emotion in EMOTIONS}
    unmodified = {"per_emotion": {e: {k: None if v is None else round(v, 4) for k, v in bases[e].items()} for e in EMOTIONS},
                  "replies": list(replies[:n]), "predicted": list(base_pred),
                  "judges": {name: {"share": {e: round(_share(labels[:n], e), 4) for e in EMOTIONS}, "labels": list(labels[:n])}
                             for name, labels in judge_labels.items()}}
    if coherence is not None:
        if rule is None:
            raise ValueError("steering_record: coherence given without its rule")
        unmodified["coherence"] = coherence_summary(coherence.logp_per_token[:n], coherence.repeated_share[:n])
    emotions: dict[str, Any] = {e: {"n_neurons": int(selected.get(e, 0)), "steered": [], "controls": []} for e in EMOTIONS}
    for i, condition in enumerate(plan):
        rows = slice(n * (i + 1), n * (i + 2))
        summary = _summary(predicted[rows], None if logp is None else logp[rows], condition.emotion)
        base = bases[condition.emotion]
        entry = {"alpha": condition.alpha, "n_neurons": condition.n_neurons,
                 "share": round(summary["share"], 4), "share_shift": _shift(summary["share"], base["share"]),
                 "logp": None if summary["logp"] is None else round(summary["logp"], 4),
                 "logp_shift": _shift(summary["logp"], base["logp"]),
                 "replies": list(replies[rows]), "predicted": list(predicted[rows]),
                 "judges": {name: _judge_entry(labels[rows], labels[:n], condition.emotion) for name, labels in judge_labels.items()}}
        if coherence is not None:
            entry["coherence"] = coherence_summary(coherence.logp_per_token[rows], coherence.repeated_share[rows],
                                                   unmodified["coherence"], rule)
        if condition.control:
            emotions[condition.emotion]["controls"].append({"draw": condition.draw, **entry})
        else:
            emotions[condition.emotion]["steered"].append(entry)
    rules = {} if rule is None or coherence is None else {"coherence": {
        "ngram": rule.ngram, "broke_logp_drop": rule.logp_drop, "broke_repeat_rise": rule.repeat_rise}}
    return {**rules, "unmodified": unmodified, "emotions": emotions}


def _judge_entry(labels: Sequence[str | None], base: Sequence[str | None], emotion: str) -> dict[str, Any]:
    share = _share(labels, emotion)
    return {"share": round(share, 4), "share_shift": _shift(share, _share(base, emotion)), "labels": list(labels)}


def judge_replies(judges: Sequence[Judge], dialogues: Sequence[str]) -> dict[str, list[str | None]]:
    """Each judge's labels of `dialogues` (as the filter stage asks them), by judge name."""
    return {judge.name: list(judge.label(dialogues)) for judge in judges}


def check_classifier_train(train: TrainSplit, eval_params: EvalParams, *, train_name: str = "train split") -> None:
    """The classifier's shots and calibration rows drawn once: a train split too small for them is
    one line (EvalDataError, naming `train_name`) before any generation."""
    shots = draw_shots(train, eval_params.shots, eval_params.seed, eval_params.shot_selection, train_name=train_name)
    calibration_dialogues(train, eval_params, shots, train_name=train_name)


def run_steering(lm: LoadedModel, prompts: Sequence[str], plan: Sequence[SteerCondition], train: TrainSplit,
                 eval_params: EvalParams, params: SteerParams, selected: Mapping[str, int], *, batch_size: int,
                 prompt_format: ResolvedPromptFormat, judges: Sequence[Judge] = ()) -> dict[str, Any]:
    """Generate the unmodified replies and each condition's, classify them all in one pass
    (`batch_size`: the classifier's, model.batch_size; generation uses steer.batch_size), and
    have each of `judges` label them too. `prompt_format`: eval.prompt_format resolved for `lm`
    where it was loaded; generation, coherence and the classifier all use it."""
    check_classifier_train(train, eval_params)
    conditions = [({}, 1.0), *((c.neurons, c.alpha) for c in plan)]  # the unmodified model first
    per_condition = steered_replies(lm, prompts, conditions, max_new_tokens=params.max_new_tokens, batch_size=params.batch_size,
                                    desc=f"steer (unmodified + {len(plan)} conditions) x {len(prompts)} prompts",
                                    prompt_format=prompt_format)
    replies = [reply for condition in per_condition for reply in condition]
    # Scored by the unmodified model (no hook is left on it), on the prompts the replies answered.
    rule = CoherenceRule(params.coherence_ngram, params.broke_logp_drop, params.broke_repeat_rise)
    coherence = chat_reply_coherence(lm, [prompts[i % len(prompts)] for i in range(len(replies))], replies,
                                     prompt_format=prompt_format,
                                     ngram=rule.ngram, batch_size=batch_size)
    dialogues = [as_dialogue(prompts[i % len(prompts)], reply) for i, reply in enumerate(replies)]
    # Scaling often leaves a reply as it was: each distinct (prompt, reply) is classified once.
    unique = list(dict.fromkeys(dialogues))
    position = {dialogue: i for i, dialogue in enumerate(unique)}
    rows = [position[dialogue] for dialogue in dialogues]
    predicted, logp = classify_replies(lm, train, eval_params, unique, batch_size, prompt_format, of=len(dialogues))
    judged = {name: [labels[r] for r in rows] for name, labels in judge_replies(judges, unique).items()}
    return steering_record(prompts, plan, [predicted[r] for r in rows], None if logp is None else logp[rows],
                           replies, selected, judged, coherence, rule) | {"classified": len(unique)}
