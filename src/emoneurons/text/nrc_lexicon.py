"""The NRC Emotion Lexicon (Mohammad & Turney 2013, "Crowdsourcing a Word-Emotion Association
Lexicon", Computational Intelligence 29(3):436-465; research use only), as bundled in the `nrclex`
package's data/nrc_en.json: 6,468 English words, each with its crowd-annotated categories.

It is the project's independent source of emotion cue words (the keyword control, cue_removal.py;
the `nrc` judge, backends/nrc_judge.py), written by neither this project nor its templates. Only the
file is read: nrclex's own tokenising goes through TextBlob, which needs corpora downloads.

Which categories count as emotion cues: the six that are this project's emotions (NRC's `joy` is
our `happiness`). NRC's `trust` and `anticipation` are not among the six labels the model chooses
from, and `positive` / `negative` are sentiment polarity, not an emotion: together they tag 5,600
words, most of the lexicon ("word", "time", "abacus"), so removing them would strip ordinary
vocabulary, not emotion cues.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path

from emoneurons.emotions import EMOTIONS
from emoneurons.errors import EmoneuronsError

# NRC category -> the project's emotion (the six the classifier answers with).
NRC_TO_EMOTION: dict[str, str] = {
    "anger": "anger", "disgust": "disgust", "fear": "fear", "joy": "happiness", "sadness": "sadness", "surprise": "surprise",
}
assert set(NRC_TO_EMOTION.values()) == set(EMOTIONS)
CITATION = ("Saif M. Mohammad and Peter D. Turney (2013). Crowdsourcing a Word-Emotion Association Lexicon. "
            "Computational Intelligence 29(3): 436-465. NRC Emotion Lexicon, research use only.")

# A word: a maximal run of ASCII letters, matched case-insensitively (the lexicon's words are all
# lowercase letters, none with an apostrophe or hyphen, so "can't" is "can" + "t" and neither is a cue).
WORD = re.compile(r"[A-Za-z]+")


class NRCLexiconError(EmoneuronsError, ValueError):
    """The lexicon file is missing or not the expected shape, in one line."""


def bundled_path() -> Path:
    """nrclex's data/nrc_en.json; NRCLexiconError when the package is not installed."""
    try:
        return Path(str(resources.files("nrclex") / "data" / "nrc_en.json"))
    except ModuleNotFoundError:
        raise NRCLexiconError("package nrclex is not installed (its data/nrc_en.json is the NRC Emotion Lexicon); "
                              "run `make setup`") from None


def parse_lexicon(raw: object, source: str) -> dict[str, frozenset[str]]:
    """word -> the project emotions NRC tags it with, for words with at least one of the six."""
    if not isinstance(raw, Mapping):
        raise NRCLexiconError(f"{source}: must be a mapping of word -> list of NRC categories")
    lexicon = {}
    for word, categories in raw.items():
        if not isinstance(word, str) or not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise NRCLexiconError(f"{source}: entry {word!r}: must be a word -> list of NRC categories")
        emotions = frozenset(NRC_TO_EMOTION[c] for c in categories if c in NRC_TO_EMOTION)
        if emotions:
            lexicon[word.lower()] = emotions
    if not lexicon:
        raise NRCLexiconError(f"{source}: no word tagged with any of {', '.join(NRC_TO_EMOTION)}")
    return lexicon


@lru_cache(maxsize=4)
def load_lexicon(path: str | None = None) -> dict[str, frozenset[str]]:
    """The lexicon of `path` (default: the bundled file), parsed once per process."""
    file = Path(path) if path is not None else bundled_path()
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NRCLexiconError(f"{file}: not found (the NRC Emotion Lexicon of package nrclex); run `make setup`") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NRCLexiconError(f"{file}: not a JSON file ({error})") from None
    return parse_lexicon(raw, str(file))


def cue_words(path: str | None = None) -> frozenset[str]:
    """Every word NRC tags with one of the six emotions (3,462 in nrclex 4.1.0's file)."""
    return frozenset(load_lexicon(path))
