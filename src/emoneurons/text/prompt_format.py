"""How messages become a model's prompt text: its own chat template, or the plain format for base
models whose tokenizer has none (`eval.prompt_format: chat | plain | auto`).

The plain format is one `role: content` line per message, then `assistant:` with no newline, so the
answer (" anger" in eval.label_format space) continues the line; the tokenizer's own special
tokens (BOS) come first, as a template would write them. `prompt_text` is the one renderer of
messages: count (`count.text: prompt`), mask-eval and the hf judges (through text/chat_prompt.py),
the hf chat backend, steering and coherence all render through it, so they agree on the format.

`eval.prompt_format` is resolved once, by `resolve_prompt_format`, where a model is loaded (the
count, mask-eval and steer stages; the hf judges and the hf chat backend where they load theirs);
everything below takes the resolved `chat` or `plain` and refuses `auto` (`resolved`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, get_args

from emoneurons.params import ParamsError, PromptFormat, allowed_values

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PROMPT_FORMATS = get_args(PromptFormat)
ResolvedPromptFormat = Literal["chat", "plain"]


class PromptFormatError(ParamsError):
    """A prompt format the tokenizer cannot give, in one line naming the key (a params problem,
    reported by the stages like any other)."""


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_prompt_format(tokenizer: PreTrainedTokenizerBase, prompt_format: str) -> ResolvedPromptFormat:
    """eval.prompt_format for the model whose tokenizer this is: `chat` or `plain` (auto is chat
    when the tokenizer has a chat template, plain otherwise). Called once, where the model is loaded."""
    if prompt_format not in PROMPT_FORMATS:
        raise PromptFormatError(f"eval.prompt_format: {prompt_format!r}: allowed: {allowed_values(PromptFormat)}")
    if prompt_format == "auto":
        return "chat" if has_chat_template(tokenizer) else "plain"
    if prompt_format == "chat" and not has_chat_template(tokenizer):
        raise PromptFormatError("eval.prompt_format: chat, but the model's tokenizer has no chat template (a base model); "
                                "allowed for it: plain, auto")
    return prompt_format


def resolved(prompt_format: str) -> ResolvedPromptFormat:
    """`prompt_format` when it is resolved (chat or plain); a ValueError for anything else: the
    format is resolved once, where the model is loaded, never again below it."""
    if prompt_format not in ("chat", "plain"):
        raise ValueError(f"prompt format {prompt_format!r} is not resolved: pass resolve_prompt_format's chat or plain, "
                         "resolved where the model is loaded")
    return prompt_format  # type: ignore[return-value]


def prompt_text(tokenizer: PreTrainedTokenizerBase, messages: Iterable[tuple[str, str]], prompt_format: ResolvedPromptFormat) -> str:
    """(role, content) pairs as the prompt text: the tokenizer's chat template with the assistant
    turn opened, or (plain) plain `role: content` lines ending in `assistant:`. The text holds a
    template's own special tokens; plain text gets the tokenizer's BOS when it is tokenized
    (`added_special_prefix`)."""
    if resolved(prompt_format) == "chat":
        turns = [{"role": role, "content": content} for role, content in messages]
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return render_plain(messages)


def render_plain(messages: Iterable[tuple[str, str]]) -> str:
    """(role, content) pairs in the plain format, the assistant's turn opened."""
    return "".join(f"{role}: {content}\n" for role, content in messages) + "assistant:"


def added_special_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The tokens the tokenizer puts before a text's own tokens (BOS, or nothing)."""
    probe = "A: hello there"
    own = tokenizer.encode(probe, add_special_tokens=False)
    full = tokenizer.encode(probe, add_special_tokens=True)
    for start in range(len(full) - len(own) + 1):
        if full[start : start + len(own)] == own:
            return full[:start]
    raise ValueError(f"{type(tokenizer).__name__}: special tokens change how text is tokenized; cannot tell the dialogue's own tokens")
