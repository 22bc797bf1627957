"""The filter's judges: each labels dialogues with one of the six emotions (None = no valid label).

- lexicon: the model-free cue lexicon (backends/lexicon.py);
- nrc: the model-free NRC Emotion Lexicon judge (backends/nrc_judge.py), independent of the project's lists;
- hf: a local causal LM classifying with the paper's labelling prompt; the classifier
  (evaluate/classify.py:classify) is passed in by the stage, since generation sits below evaluate;
  in generate mode an answer outside the six, or one cut off at max_new_tokens (no EOS: it looks
  whole but is not, like the openai backend's finish_reason "length"), is asked once more with the
  stricter retry prompt, then dropped (None) and counted;
- openai: a chat endpoint asked the paper's labelling prompt, then the retry prompt for answers
  outside the six (paper, Figure 7).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from emoneurons.backends.lexicon import lexicon_labels
from emoneurons.emotions import parse_emotion
from emoneurons.params import JudgeBackend, allowed_values
from emoneurons.text.paper_prompts.label import label_prompt
from emoneurons.text.prompt_format import ResolvedPromptFormat, resolve_prompt_format, resolved

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from emoneurons.backends.chat import ChatBackend
    from emoneurons.model.loading import LoadedModel
    from emoneurons.params import JudgeParams, ModelParams
    from emoneurons.text.chat_prompt import ChatPrompt


# An hf judge's own answer settings, not eval's (the judge labels dialogues for the filter, before
# any eval setting applies): the first emotion word of a short greedy answer, or the bare label words scored.
JUDGE_MAX_NEW_TOKENS = 8
JUDGE_LABEL_FORMAT = "bare"


class Judge(Protocol):
    name: str

    def label(self, dialogues: Sequence[str]) -> list[str | None]: ...


class Classify(Protocol):
    """evaluate.classify.classify: its answer's `.predicted` holds one label (or None) per dialogue."""

    def __call__(self, lm: LoadedModel, prompt: ChatPrompt, dialogues: Sequence[str], method: Literal["score", "generate"], *,
                 batch_size: int, desc: str = "", **options: Any) -> Any: ...


class LexiconJudge:
    def __init__(self, name: str) -> None:
        self.name = name

    def label(self, dialogues: Sequence[str]) -> list[str | None]:
        return lexicon_labels(dialogues)


def relabel_invalid(
    labels: list[str | None], dialogues: Sequence[str], ask_again: Callable[[Sequence[str]], list[str | None]]
) -> tuple[list[str | None], int]:
    """Labels with the None ones asked once more (`ask_again(dialogues) -> labels`), and how many
    were asked again."""
    missing = [i for i, label in enumerate(labels) if label is None]
    if not missing:
        return labels, 0
    again = ask_again([dialogues[i] for i in missing])
    labels = list(labels)
    for i, label in zip(missing, again):
        labels[i] = label
    return labels, len(missing)


def labelling_prompt(tokenizer: PreTrainedTokenizerBase, prompt_format: ResolvedPromptFormat, retry: bool = False) -> ChatPrompt:
    """Figure 7's labelling prompt (or its stricter retry) as one user turn."""
    from emoneurons.text.chat_prompt import user_turn_prompt

    return user_turn_prompt(tokenizer, lambda dialogue: label_prompt(dialogue, retry=retry), prompt_format)


class HFJudge:
    """Classifies with a loaded model (shared between hf judges) and the labelling prompt."""

    def __init__(self, name: str, lm: LoadedModel, method: Literal["score", "generate"], batch_size: int,
                 prompt_format: ResolvedPromptFormat, *, classify: Classify) -> None:
        self.name, self.lm, self.method, self.batch_size = name, lm, method, batch_size
        self.classify = classify
        self.prompt_format = prompt_format
        self.reasked = 0
        self.cut_off = 0  # generate: answers stopped at max_new_tokens (no EOS), never taken as labels

    def _classify(self, dialogues: Sequence[str], retry: bool) -> list[str | None]:
        prompt = labelling_prompt(self.lm.tokenizer, self.prompt_format, retry=retry)
        desc = f"judge {self.name}" + (" (retry prompt)" if retry else "")
        result = self.classify(self.lm, prompt, dialogues, self.method, batch_size=self.batch_size, desc=desc,
                               max_new_tokens=JUDGE_MAX_NEW_TOKENS, label_format=JUDGE_LABEL_FORMAT)
        if result.cut_off is None:  # score: no answer is generated
            return result.predicted
        self.cut_off += sum(result.cut_off)
        return [None if cut else label for label, cut in zip(result.predicted, result.cut_off)]

    def label(self, dialogues: Sequence[str]) -> list[str | None]:
        labels = self._classify(dialogues, retry=False)
        if self.method == "generate":
            labels, self.reasked = relabel_invalid(labels, dialogues, lambda d: self._classify(d, retry=True))
        return labels


class ChatJudge:
    """Asks a chat backend the paper's labelling prompt; the stricter prompt for invalid answers."""

    def __init__(self, name: str, backend: ChatBackend) -> None:
        self.name, self.backend = name, backend
        self.reasked = 0

    def _ask(self, dialogues: Sequence[str], retry: bool) -> list[str | None]:
        from emoneurons.backends.chat import ChatRequest

        requests = [ChatRequest(messages=(("user", label_prompt(d, retry=retry)),)) for d in dialogues]
        desc = f"judge {self.name}" + (" (retry prompt)" if retry else "")
        answers = self.backend.complete(requests, desc=desc)
        return [parse_emotion(answer) if answer is not None else None for answer in answers]

    def label(self, dialogues: Sequence[str]) -> list[str | None]:
        labels, self.reasked = relabel_invalid(
            self._ask(dialogues, retry=False), dialogues, lambda d: self._ask(d, retry=True)
        )
        return labels


def make_judges(specs: Sequence[JudgeParams], model_params: ModelParams, cache_dir: Path, prompt_format: str,
                classify: Classify | None = None, lm: LoadedModel | None = None) -> list[Judge]:
    """The judges of `specs` (filter.judges), in order; hf judges share one loaded model and label
    with `classify` (evaluate.classify.classify). The model is `lm` when given (e.g. the steer
    stage's), and `prompt_format` the format resolved where it was loaded (chat or plain); else it
    is loaded here from `model_params`, and `prompt_format` (eval.prompt_format) resolved for it here."""
    judges: list[Judge] = []
    hf_format: ResolvedPromptFormat | None = None  # the hf judges' model's format, once it is known
    for spec in specs:
        if spec.backend == "lexicon":
            judges.append(LexiconJudge(spec.name))
        elif spec.backend == "nrc":
            from emoneurons.backends.nrc_judge import NRCJudge

            judges.append(NRCJudge(spec.name))
        elif spec.backend == "hf":
            if classify is None:
                raise ValueError(f"make_judges: hf judge {spec.name!r} needs classify= (evaluate.classify.classify)")
            if hf_format is None and lm is None:
                from emoneurons.model.loading import load_model

                lm = load_model(model_params)
                # a format the tokenizer lacks: one line, before any judging
                hf_format = resolve_prompt_format(lm.tokenizer, prompt_format)
            elif hf_format is None:
                hf_format = resolved(prompt_format)
            assert lm is not None
            judges.append(HFJudge(spec.name, lm, spec.method, model_params.batch_size, hf_format, classify=classify))
        elif spec.backend == "openai":
            from emoneurons.backends.factory import make_chat_backend

            backend = make_chat_backend("openai", openai=spec.openai, cache_dir=Path(cache_dir))
            judges.append(ChatJudge(spec.name, backend))
        else:  # params validation makes this unreachable; kept so a new backend fails loudly
            raise ValueError(f"unknown judge backend {spec.backend!r}; allowed: {allowed_values(JudgeBackend)}")
    return judges


def judge_metrics(judges: Sequence[Judge]) -> dict[str, dict]:
    """What a run of `judges` reports besides labels: the API judges' usage (`judge_usage`) and the
    hf generate judges' answers cut off at max_new_tokens over both asks (`judge_cut_off`, never
    taken as labels); a key only when some judge has it."""
    metrics: dict[str, dict] = {}
    usage = {j.name: j.backend.usage.as_metrics() for j in judges if hasattr(j, "backend")}
    if usage:
        metrics["judge_usage"] = usage
    cut_off = {j.name: j.cut_off for j in judges if getattr(j, "method", None) == "generate"}
    if cut_off:
        metrics["judge_cut_off"] = cut_off
    return metrics
