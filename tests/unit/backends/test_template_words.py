"""The template backend's word lists are package data (backends/template_data/*.json): outputs pinned
to those of the single module they were moved out of (bench/template_split_identity.py compares many
more), the lists load as tuples, and pyproject ships the files with the package."""

from __future__ import annotations

import fnmatch
import hashlib
import tomllib

from emoneurons.backends.template_dialogues import BANKS, SHAPES, template_dialogue
from emoneurons.backends.template_topics import MODIFIERS, TOPIC_BANK, template_alternative
from emoneurons.emotions import EMOTIONS
from helpers.stage_runner import REPO

DATA = REPO / "src/emoneurons/backends/template_data"


def test_dialogues_are_the_ones_the_single_module_generated():
    assert template_dialogue("Dogs", "fear", 0, 0, 12) == (
        "A: Come look at this, it's about Dogs.\nB: What am I looking at?\nA: A stranger kept staring at me through the "
        "window during the weekend fair on Dogs, and then he was gone.\nB: What if he comes back? That's what scares me.\n"
        "A: Every time my phone buzzes I panic that it's them again.\nB: Please tell me you locked every door.\n"
        "A: Please don't leave me alone tonight. I'm too frightened.", None)
    assert template_dialogue("Pottery", "anger", 2, 7, 6) == (
        "A: You sounded different on the phone. Is it Pottery?\nB: Yes. It's Pottery.\nA: Tell me everything.\n"
        "B: My cousin trashed the workshop on Pottery in front of everyone, just to make me look stupid.\n"
        "A: That must hurt so much. I'm here for you.\nB: This is not over. I'm going to make them answer for it.", "sadness")
    digest = hashlib.sha256()
    for seed in range(2):
        for topic in ("Dogs", "Sushi", "Jazz", "making dog treats"):
            for emotion in EMOTIONS:
                for k in range(2):
                    text, mixed = template_dialogue(topic, emotion, k, seed, 12)
                    digest.update(f"{text}\x00{mixed}\x01".encode())
    assert digest.hexdigest() == "ccb0fbbc483bfbb91f117c93bc34301e8e196d76bd9c542e07964ed6042b44f4"


def test_topic_alternatives_are_the_ones_the_single_module_generated():
    assert template_alternative("knitting", 0, 0) == "Pottery"
    assert template_alternative("Emily Dickinson", 1, 3) == "Zadie Smith"
    assert template_alternative("quantum foam", 0, 1) == "Robotics"


def test_word_lists_load_as_tuples():
    assert isinstance(MODIFIERS, tuple) and isinstance(TOPIC_BANK["pets"], tuple)
    assert isinstance(BANKS["fear"]["event"], tuple)
    assert all(isinstance(pair, tuple) and len(pair) == 2 for shape in SHAPES.values() for pair in shape["openers"])


def test_pyproject_ships_the_word_lists_with_the_package():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["emoneurons.backends"]
    files = sorted(p.relative_to(DATA.parent).as_posix() for p in DATA.iterdir())
    assert files == ["template_data/dialogues.json", "template_data/topics.json"]
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
