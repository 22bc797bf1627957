"""The `nrc` judge: a model-free emotion judge from the NRC Emotion Lexicon (text/nrc_lexicon.py), a
human-annotated lexicon independent of this project's templates and of its own `lexicon` judge.

Each word (nrc_lexicon.WORD, case-insensitive) that NRC tags with an emotion adds one to each
emotion it is tagged with (NRC tags "frightened" fear and surprise: one to both). The label is the
emotion with the most; no cue word, or a tie for the most, gives None (the judge abstains), as the
`lexicon` judge does. No negation handling: the lexicon has none, and the judge stays as plain as
the lexicon it reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from emoneurons.emotions import EMOTIONS
from emoneurons.io.tables import DataError
from emoneurons.text.nrc_lexicon import WORD, NRCLexiconError, load_lexicon


def nrc_counts(text: str, lexicon: Mapping[str, frozenset[str]]) -> dict[str, int]:
    """Per emotion (every emotion a key), how many of `text`'s words NRC tags with it."""
    counts = dict.fromkeys(EMOTIONS, 0)
    for match in WORD.finditer(text):
        for emotion in lexicon.get(match.group().lower(), ()):
            counts[emotion] += 1
    return counts


def nrc_label(text: str, lexicon: Mapping[str, frozenset[str]]) -> str | None:
    """The emotion with the most NRC cue words in `text`; None when there is none or a tie."""
    counts = nrc_counts(text, lexicon)
    best = max(counts.values())
    top = [e for e, n in counts.items() if n == best]
    return top[0] if best > 0 and len(top) == 1 else None


class NRCJudge:
    """filter.judges' `backend: nrc`."""

    def __init__(self, name: str, lexicon_path: str | None = None) -> None:
        self.name = name
        try:  # a missing nrclex: one line (the stages print DataError) before any judging
            self.lexicon = load_lexicon(lexicon_path)
        except NRCLexiconError as error:
            raise DataError(f"judge {name!r} (backend nrc): {error}") from None

    def label(self, dialogues: Sequence[str]) -> list[str | None]:
        return [nrc_label(dialogue, self.lexicon) for dialogue in dialogues]
