"""A model-free emotion judge: a general-purpose English cue lexicon with simple negation.

Each emotion has cue words (a trailing `*` matches any ending: `terrif*` matches terrified,
terrifying) and multi-word phrases. A cue preceded within NEGATION_WINDOW words of its clause by a
negator ("not", "never", "n't", ...) does not count. The label is the emotion with the most cues;
no cue, or a tie for the most, gives None (the judge abstains).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from emoneurons.emotions import EMOTIONS

LEXICON: dict[str, tuple[str, ...]] = {
    "anger": (
        "anger", "angry", "angrier", "angrily", "furious*", "fury", "rage", "raging", "enrag*",
        "outrag*", "livid", "irate", "irritat*", "annoy*", "infuriat*", "mad at", "pissed",
        "resent*", "hostil*", "hate", "hated", "hateful", "sick of", "fed up", "had enough",
        "how dare", "unacceptable", "unfair", "insult*", "betray*", "seething", "fuming",
        "frustrat*", "yell*", "shout*", "scream at", "disrespect*", "lied", "liar*", "ripped off",
        "blood boil*", "cheat*", "exasperat*", "indignant", "aggravat*", "spiteful", "bitter*",
        "slam*", "complain*", "rude*", "arrogan*",
    ),
    "disgust": (
        "disgust*", "gross", "grossed", "revolting", "revolted", "repuls*", "repugnan*", "nause*",
        "vile", "filth*", "sicken*", "stench", "stink*", "stank", "rotten", "rotting", "mould*",
        "mold*", "slim*", "putrid", "foul", "vomit*", "puke*", "throw up", "threw up", "gag*",
        "yuck*", "ew", "eww*", "icky", "grimy", "grime", "rancid", "maggot*", "cockroach*",
        "roach*", "sewage", "turns my stomach", "unsanitary", "contaminat*", "greasy", "spit*",
        "abhor*", "loathsome", "squalid", "nasty", "queasy", "unhygienic", "dirty",
    ),
    "fear": (
        "fear", "feared", "fearful", "afraid", "scared", "scary", "scare*", "terrif*", "frighten*",
        "panic*", "nervous*", "anxious*", "anxiety", "worried", "worry", "worrying", "dread*",
        "trembl*", "shaking", "shaky", "nightmare*", "threat*", "danger*", "unsafe", "alarm*",
        "petrified", "creepy", "heart is pounding", "heart was pounding", "can't breathe",
        "couldn't breathe", "what if", "chills", "horror", "menac*", "spooked", "uneasy",
        "apprehensi*", "intruder*", "hiding",
    ),
    "happiness": (
        "happiness", "happy", "happier", "happiest", "joy*", "delight*", "thrilled", "wonderful",
        "fantastic", "glad", "grateful", "gratitude", "celebrat*", "proud", "cheerful", "smil*",
        "grin*", "laugh*", "yay", "hooray", "awesome", "best day", "blessed", "pleased", "content",
        "contented", "over the moon", "brilliant", "enjoy*", "fun", "love it", "loved it",
        "lovely", "ecstatic", "elated", "overjoyed", "congratulat*", "dream come true",
        "on top of the world", "cheer*", "bliss*", "great news", "perfect", "excited", "exciting",
    ),
    "sadness": (
        "sadness", "sad", "sadder", "saddest", "sorrow*", "grief", "griev*", "mourn*", "cry",
        "cried", "crying", "tears", "tearful", "heartbr*", "miss", "missed", "missing", "lonely",
        "loneliness", "depress*", "gloom*", "unhappy", "regret*", "loss", "empty", "emptiness",
        "hopeless*", "devastat*", "funeral", "passed away", "goodbye", "gone forever",
        "disappoint*", "downcast", "despair*", "melanchol*", "miserable", "misery", "weep*",
        "wept", "sob*", "never be the same", "breaks my heart", "broke my heart", "painful", "alone",
    ),
    "surprise": (
        "surprise", "surprised", "surprising", "surprisingly", "shock*", "astonish*", "amaz*",
        "stun*", "unexpected*", "can't believe", "cannot believe", "couldn't believe", "no way",
        "wow", "whoa", "woah", "out of nowhere", "never expected", "didn't expect",
        "did not expect", "who knew", "out of the blue", "speechless", "startl*", "sudden*",
        "wait what", "jaw dropp*", "never saw", "didn't see that coming",
        "did not see that coming", "nobody saw that coming", "twist", "gasp*", "mind blown",
        "unbelievabl*", "bombshell", "who would have thought",
    ),
}

NEGATORS = frozenset(("not", "no", "never", "nothing", "hardly", "barely", "without", "nobody", "neither", "nor"))
NEGATION_WINDOW = 3
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_CLAUSE = re.compile(r"[.!?;:,\n]+|\bbut\b")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _is_negator(word: str) -> bool:
    return word in NEGATORS or word.endswith("n't")


@lru_cache(maxsize=1)
def _cue_index() -> tuple[dict[str, list[tuple[str, tuple[str, ...]]]], dict[int, set[str]]]:
    """Cues by their first word (a stem keeps its `*`), and the stem lengths to try per word:
    each word then costs a few dict look-ups instead of a pass over the whole lexicon."""
    by_first: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    stem_lengths: dict[int, set[str]] = {}
    for emotion in EMOTIONS:
        for cue in LEXICON[emotion]:
            words = _words(cue.rstrip("*"))
            if cue.endswith("*"):
                words[-1] += "*"
            first = words[0]
            by_first.setdefault(first, []).append((emotion, tuple(words)))
            if first.endswith("*"):
                stem_lengths.setdefault(len(first) - 1, set()).add(first)
    return by_first, stem_lengths


def _matches(cue: tuple[str, ...], words: Sequence[str], start: int) -> bool:
    if start + len(cue) > len(words):
        return False
    for part, word in zip(cue, words[start : start + len(cue)]):
        if part.endswith("*") and word.startswith(part[:-1]):
            continue
        if part != word:
            return False
    return True


def _candidates(word: str) -> list[tuple[str, tuple[str, ...]]]:
    by_first, stem_lengths = _cue_index()
    found = list(by_first.get(word, ()))
    for length, stems in stem_lengths.items():
        if len(word) >= length and word[:length] + "*" in stems:
            found += by_first[word[:length] + "*"]
    return found


def cue_counts(text: str) -> dict[str, int]:
    """How many un-negated cues of each emotion `text` holds (every emotion is a key)."""
    counts = dict.fromkeys(EMOTIONS, 0)
    for clause in _CLAUSE.split(text.lower().replace("\u2019", "'")):
        words = _words(clause)
        for start, word in enumerate(words):
            for emotion, cue in _candidates(word):
                if not _matches(cue, words, start):
                    continue
                before = words[max(0, start - NEGATION_WINDOW) : start]
                if not any(_is_negator(w) for w in before):
                    counts[emotion] += 1
    return counts


def lexicon_label(text: str) -> str | None:
    """The emotion with the most cues in `text`; None when no cue fires or the top is tied."""
    counts = cue_counts(text)
    best = max(counts.values())
    top = [e for e, n in counts.items() if n == best]
    return top[0] if best > 0 and len(top) == 1 else None


def lexicon_labels(dialogues: Sequence[str]) -> list[str | None]:
    return [lexicon_label(dialogue) for dialogue in dialogues]
