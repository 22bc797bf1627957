"""The keyword control's text side: where a dialogue's emotion cue words are, and the dialogue with
each replaced by a neutral word.

Words are nrc_lexicon.WORD matches (runs of ASCII letters), compared lowercased with the cue set
(the NRC Emotion Lexicon's words for the six emotions). Each cue word is REPLACED by PLACEHOLDER,
not deleted: the sentence keeps its length in words and its shape ("I'm too something."), so what
changes between the two versions is the word's meaning, not the text's length or a telltale gap;
a dialogue made of nothing but cue words stays a dialogue (of placeholders) and is counted as such
(`no_other_word`), never dropped. PLACEHOLDER is in neither lexicon (checked by a test).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

from emoneurons.errors import EmoneuronsError
from emoneurons.text.nrc_lexicon import WORD

PLACEHOLDER = "something"


class CueTokensError(EmoneuronsError, ValueError):
    """Cue tokens cannot be found with this tokenizer (no character offsets), in one line."""


def cue_spans(text: str, cues: Collection[str]) -> list[tuple[int, int]]:
    """Character spans [start, end) of the cue words in `text`, in order."""
    return [m.span() for m in WORD.finditer(text) if m.group().lower() in cues]


def replace_cues(text: str, cues: Collection[str], placeholder: str = PLACEHOLDER) -> tuple[str, int]:
    """`text` with every cue word replaced by `placeholder`, and how many were replaced."""
    spans = cue_spans(text, cues)
    pieces, last = [], 0
    for start, end in spans:
        pieces += [text[last:start], placeholder]
        last = end
    pieces.append(text[last:])
    return "".join(pieces), len(spans)


def cue_token_positions(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """Indices of the tokens (character `offsets` [start, end) each, from a fast tokenizer) that
    overlap a cue word's span: a token holding part of a cue word is a cue token; an empty span
    (a special token) never is."""
    positions = []
    j = 0
    for i, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        while j < len(spans) and spans[j][1] <= start:  # spans and offsets are both in text order
            j += 1
        if j < len(spans) and spans[j][0] < end:
            positions.append(i)
    return positions


def removal_record(dialogues: Sequence[str], cues: Collection[str]) -> tuple[list[str], dict]:
    """The dialogues with their cue words replaced, and what was replaced: per dialogue the cue
    words it lost, how many dialogues lost how many (a histogram), and how many had no other word."""
    replaced, lost, alone = [], [], 0
    for dialogue in dialogues:
        text, n = replace_cues(dialogue, cues)
        replaced.append(text)
        lost.append(n)
        words = len(WORD.findall(dialogue))
        alone += int(words > 0 and n == words)
    histogram = Counter(lost)
    return replaced, {
        "dialogues": len(dialogues), "with_cues": sum(n > 0 for n in lost), "cue_words": sum(lost),
        "no_other_word": alone, "placeholder": PLACEHOLDER,
        "dialogues_by_cue_words": {str(k): histogram[k] for k in sorted(histogram)},
        "per_dialogue": lost,
    }


def cue_token_counts(tokenizer, dialogues: Sequence[str], cues: Collection[str]) -> list[int]:
    """Per dialogue, how many of its tokens (a fast tokenizer's, no special tokens) are cue tokens:
    the tokens the keyword control takes out of it."""
    if not dialogues:
        return []
    encoded = tokenizer(list(dialogues), add_special_tokens=False, return_offsets_mapping=True)
    return [len(cue_token_positions(offsets, cue_spans(d, cues))) for d, offsets in zip(dialogues, encoded["offset_mapping"])]
