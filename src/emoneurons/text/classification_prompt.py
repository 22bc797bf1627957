"""Figure 5's classification prompt (the paper's system and user prompts, with in-context
examples) as token ids around the dialogue: what mask-eval, count (`text: prompt`) and steering
classify with. Rewording Figure 5 (text/paper_prompts/classify.py) reruns only the stages importing this."""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from transformers import PreTrainedTokenizerBase

from emoneurons.params import ShotInstruction, allowed_values
from emoneurons.text.chat_prompt import DIALOGUE_SLOT, ChatPrompt, chat_prompt
from emoneurons.text.paper_prompts.classify import CLASSIFY_SYSTEM_PROMPT, CLASSIFY_USER_PROMPT
from emoneurons.text.prompt_format import ResolvedPromptFormat, resolved


def _with_system(tokenizer: PreTrainedTokenizerBase, system: str, prompt_format: ResolvedPromptFormat) -> list[dict[str, str]]:
    # Some templates (Gemma) reject a system role: fold it into the first user turn there.
    if prompt_format == "plain":
        return [{"role": "system", "content": system}]
    try:
        tokenizer.apply_chat_template([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}], tokenize=False)
        return [{"role": "system", "content": system}]
    except Exception:
        return []


def classification_prompt(
    tokenizer: PreTrainedTokenizerBase, shots: Sequence[tuple[str, str]] = (), instruction: str = "every", *,
    prompt_format: ResolvedPromptFormat,
) -> ChatPrompt:
    """Figure 5 (system + user prompt); `shots` are (dialogue, emotion) examples given first as
    user/assistant turns, the in-context setup that small models need (DESIGN.md). `instruction`:
    `every` example's user turn is Figure 5's user prompt around its dialogue, or only the `first`
    one's (the later examples are the bare dialogue; the question always has the whole prompt).
    `prompt_format`: chat | plain, resolved where the model was loaded (text/prompt_format.py)."""
    if instruction not in get_args(ShotInstruction):
        raise ValueError(f"shot_instruction {instruction!r}: allowed: {allowed_values(ShotInstruction)}")
    messages = _with_system(tokenizer, CLASSIFY_SYSTEM_PROMPT, resolved(prompt_format))
    system_folded = not messages
    for i, (dialogue, emotion) in enumerate(shots):
        user = CLASSIFY_USER_PROMPT.format(prompt=dialogue) if instruction == "every" or i == 0 else dialogue
        if system_folded and i == 0:
            user = CLASSIFY_SYSTEM_PROMPT + "\n\n" + user
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": emotion}]
    user = CLASSIFY_USER_PROMPT.format(prompt=DIALOGUE_SLOT)
    if system_folded and not shots:
        user = CLASSIFY_SYSTEM_PROMPT + "\n\n" + user
    messages.append({"role": "user", "content": user})
    return chat_prompt(tokenizer, messages, prompt_format)
