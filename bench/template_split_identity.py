"""One-off check for the split of backends/template.py into template_topics.py, template_dialogues.py
and package data (template_data/*.json): the word lists are equal and the new code generates
byte-identical topics and dialogues to the single module at a git ref from before the split
(default: da1ac2e, main when the split was made).

    .venv/bin/python bench/template_split_identity.py [REF]
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from emoneurons.backends.template_dialogues import template_dialogue
from emoneurons.backends.template_topics import TOPIC_BANK, alternative_candidates, template_alternative
from emoneurons.emotions import EMOTIONS

REPO = Path(__file__).resolve().parents[1]


def old_module(ref: str):
    source = subprocess.run(["git", "show", f"{ref}:src/emoneurons/backends/template.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("old_template", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{ref}:template.py", "exec"), module.__dict__)
    return module


def main(ref: str = "da1ac2e") -> None:
    old = old_module(ref)
    from emoneurons.backends import template_dialogues as dialogues
    from emoneurons.backends import template_topics as topics_module

    for name in ("TOPIC_BANK", "TOPIC_KEYWORDS", "NAME_CATEGORY_NOUNS", "MODIFIERS", "_STOPWORDS"):
        assert getattr(topics_module, name) == getattr(old, name), name
    for name in ("CONTEXTS", "PEOPLE", "SHAPES", "BANKS", "FORBIDDEN_WORDS", "MIXED_SHARE", "MIN_TURNS", "MAX_TURNS"):
        assert getattr(dialogues, name) == getattr(old, name), name
    print("word lists: equal, tuples as before")
    seeds = (REPO / "data/seeds/topics.txt").read_text().split("\n")
    topics = [t for t in seeds if t.strip()] + [m for members in TOPIC_BANK.values() for m in members[:3]]
    topics += ["making dog treats", "knitting", "Emily Dickinson", "quantum foam", "x"]
    compared = 0
    for seed in range(5):
        for topic in topics:
            assert list(alternative_candidates(topic, seed)) == list(old.alternative_candidates(topic, seed)), (topic, seed)
            for attempt in range(3):
                def taken(c):
                    return (len(c) % 3 == 0)
                assert template_alternative(topic, attempt, seed, taken) == old.template_alternative(topic, attempt, seed, taken)
                compared += 1
    print(f"topics: {compared} template_alternative calls and {5 * len(topics)} candidate lists identical")
    compared = 0
    for seed in range(3):
        for topic in topics[:120]:
            for emotion in EMOTIONS:
                for k in range(3):
                    for max_turns in (12, 6):
                        new = template_dialogue(topic, emotion, k, seed, max_turns)
                        assert new == old.template_dialogue(topic, emotion, k, seed, max_turns), (topic, emotion, k, seed)
                        compared += 1
    print(f"dialogues: {compared} template_dialogue outputs identical (text and mixed emotion)")


if __name__ == "__main__":
    main(*sys.argv[1:])
