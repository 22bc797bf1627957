"""Prompts as token ids around the dialogue, in the model's own chat format (the texts come from
text/paper_prompts/ through their callers: text/classification_prompt.py, the judges).

The format is the model's chat template, or the plain `role: content` lines of text/prompt_format.py
for base models (`eval.prompt_format`). A prompt is split into a `prefix` (everything before the dialogue: system prompt, in-context
examples, the user prompt's opening) and a `suffix` (the rest of the user turn and the
assistant's header). The prefix is the same for every dialogue, so it is computed once and
reused as a KV cache; the dialogue's own tokens are known exactly, which `count.text: prompt`
needs to count only them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import get_args

from transformers import PreTrainedTokenizerBase

from emoneurons.emotions import EMOTIONS
from emoneurons.params import LabelFormat, allowed_values
from emoneurons.text.prompt_format import ResolvedPromptFormat, added_special_prefix, prompt_text, resolved

DIALOGUE_SLOT = "\u0000DIALOGUE\u0000"


@dataclass(frozen=True)
class ChatPrompt:
    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    def ids(self, dialogue_ids: Sequence[int]) -> list[int]:
        return [*self.prefix, *dialogue_ids, *self.suffix]


def dialogue_ids(tokenizer: PreTrainedTokenizerBase, dialogue: str) -> list[int]:
    """A dialogue's tokens as they stand inside a prompt (no special tokens added)."""
    return tokenizer.encode(dialogue, add_special_tokens=False)


def chat_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], prompt_format: ResolvedPromptFormat) -> ChatPrompt:
    """`messages` (one of them holding DIALOGUE_SLOT once) rendered in `prompt_format` (chat or
    plain, resolved where the model was loaded) and split around the dialogue."""
    plain = resolved(prompt_format) == "plain"
    text = prompt_text(tokenizer, [(m["role"], m["content"]) for m in messages], prompt_format)
    # Plain text gets what the tokenizer puts first (BOS); a rendered template already holds its
    # special tokens (BOS, headers) as text.
    special = tuple(added_special_prefix(tokenizer)) if plain else ()
    if text.count(DIALOGUE_SLOT) != 1:
        raise ValueError("the chat template must render the dialogue slot exactly once")
    before, after = text.split(DIALOGUE_SLOT)
    encode = lambda part: tuple(tokenizer.encode(part, add_special_tokens=False))  # noqa: E731
    return ChatPrompt(prefix=special + encode(before), suffix=encode(after))


def user_turn_prompt(
    tokenizer: PreTrainedTokenizerBase, user_text: Callable[[str], str], prompt_format: ResolvedPromptFormat
) -> ChatPrompt:
    """One user turn whose text is `user_text(dialogue)` (the judges' labelling prompt): the
    caller brings the text, so the stages that never send it do not depend on it."""
    return chat_prompt(tokenizer, [{"role": "user", "content": user_text(DIALOGUE_SLOT)}], prompt_format)


# Contextual calibration's content-free input (Zhao et al. 2021), in the dialogues' own format.
CONTENT_FREE_DIALOGUE = "A: N/A\nB: N/A"


def label_ids(tokenizer: PreTrainedTokenizerBase, label_format: str) -> list[list[int]]:
    """Each emotion's tokens as the first words of the assistant's answer, in EMOTIONS order;
    `space` scores the word with a leading space (whole-word tokens instead of "f"+"ear")."""
    if label_format not in get_args(LabelFormat):
        raise ValueError(f"label_format {label_format!r}: allowed: {allowed_values(LabelFormat)}")
    lead = " " if label_format == "space" else ""
    return [tokenizer.encode(lead + emotion, add_special_tokens=False) for emotion in EMOTIONS]
