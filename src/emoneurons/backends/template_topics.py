"""The template backend's topic alternatives: a bank of category -> members
(template_data/topics.json); a topic found in (or sharing a content word with) a category gets
another member; otherwise a modifier is composed with its head noun."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from itertools import islice

from emoneurons.backends.template import seeded_rng, template_words

_WORDS = template_words("template_data/topics.json")
TOPIC_BANK: dict[str, tuple[str, ...]] = _WORDS["TOPIC_BANK"]
# Extra content words that point to a category when the topic itself is not in the bank.
TOPIC_KEYWORDS: dict[str, tuple[str, ...]] = _WORDS["TOPIC_KEYWORDS"]
# Categories of names ("Emily Dickinson", "Kenya"): a modifier does not compose with a name, so
# their compositions use these common nouns instead ("Modern Poetry", "Coastal Towns").
NAME_CATEGORY_NOUNS: dict[str, tuple[str, ...]] = _WORDS["NAME_CATEGORY_NOUNS"]
MODIFIERS: tuple[str, ...] = _WORDS["MODIFIERS"]

_STOPWORDS = frozenset(
    "a an the of in on at to for and or with about from by into my our your their how what why "
    "is are be i would like discuss making make making most old new best good".split()
)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


@lru_cache(maxsize=1)
def _indexes() -> tuple[dict[str, str], dict[str, str]]:
    """(member key -> category, content word -> category); the first category listed wins."""
    members: dict[str, str] = {}
    words: dict[str, str] = {}
    for category, names in TOPIC_BANK.items():
        for name in names:
            members.setdefault(" ".join(_words(name)), category)
    for category, extra in TOPIC_KEYWORDS.items():
        for word in extra:
            words.setdefault(_singular(word), category)
    for category, names in TOPIC_BANK.items():
        for name in names:
            for word in _words(name):
                if word not in _STOPWORDS and len(word) > 2:
                    words.setdefault(_singular(word), category)
    return members, words


def topic_category(topic: str) -> str | None:
    """The bank category of a topic: its own entry, else the first content word that names one."""
    members, words = _indexes()
    tokens = _words(topic)
    if " ".join(tokens) in members:
        return members[" ".join(tokens)]
    # The last content word is usually the head noun ("making dog treats" -> treats, dog).
    for word in reversed(tokens):
        if word not in _STOPWORDS and _singular(word) in words:
            return words[_singular(word)]
    return None


def _head_noun(topic: str) -> str:
    tokens = re.findall(r"[A-Za-z0-9][A-Za-z0-9'-]*", topic)
    content = [t for t in tokens if t.lower() not in _STOPWORDS] or tokens or ["topic"]
    return content[-1]


def alternative_candidates(topic: str, seed: int) -> Iterator[str]:
    """Every alternative the template would offer for `topic`, in the seeded order it offers them:
    other members of the topic's category, then a modifier with the topic's head noun, then a
    modifier with the head noun of a category member ("Vintage Pottery")."""
    rng = seeded_rng("augment", seed, " ".join(_words(topic)))
    own = " ".join(_words(topic))
    category = topic_category(topic)
    related = [m for m in TOPIC_BANK.get(category, ()) if " ".join(_words(m)) != own]
    rng.shuffle(related)
    yield from related
    capital = topic[:1].isupper()
    modifiers = [m.capitalize() if capital else m for m in MODIFIERS if m not in topic.lower().split()]
    nouns = NAME_CATEGORY_NOUNS.get(category or "")
    heads = list(nouns) if nouns else [_head_noun(topic)] + [_head_noun(m) for m in related]
    seen = set()
    for head in dict.fromkeys(heads):
        for modifier in rng.sample(modifiers, len(modifiers)):
            text = f"{modifier} {head if capital or nouns is None else head.lower()}"
            if text.lower() not in seen and text.lower() != topic.lower():
                seen.add(text.lower())
                yield text


def template_alternative(topic: str, attempt: int, seed: int, taken: Callable[[str], bool] | None = None) -> str | None:
    """The attempt-th seeded alternative to `topic` (a re-ask gets the next one), skipping the
    candidates `taken` says are already in the pool, as an LLM shown the existing topics would."""
    free = (c for c in alternative_candidates(topic, seed) if taken is None or not taken(c))
    return next(islice(free, attempt, None), None)
