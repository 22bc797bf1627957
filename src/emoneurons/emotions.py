"""The six basic emotions (Ekman 1992) in the paper's order. The paper's prompts are in
text/paper_prompts/, one module per prompt, so that rewording one reruns only the stages that send it."""

from __future__ import annotations

import re

EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
EMOTION_INDEX: dict[str, int] = {e: i for i, e in enumerate(EMOTIONS)}

_EMOTION_WORD = re.compile(r"\b(" + "|".join(EMOTIONS) + r")\b", re.IGNORECASE)


def parse_emotion(answer: str) -> str | None:
    """The first of the six emotion words in a model's answer, or None when there is none."""
    match = _EMOTION_WORD.search(answer)
    # casefold, not lower: IGNORECASE also matches "ſadness" (long s), which lower() keeps as is.
    return match.group(1).casefold() if match else None
