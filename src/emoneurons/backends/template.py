"""The offline `template` backend: seeded, deterministic topic alternatives
(backends/template_topics.py) and dialogues (backends/template_dialogues.py) composed from
hand-written word lists, package data in backends/template_data/. It stands in for an LLM on a
laptop and in tests; its output is always labelled backend/model "template", never presented as
LLM output. This module holds what both halves share: the name, the seeded random source and the
loader of the word lists."""

from __future__ import annotations

import hashlib
import json
import random
from importlib.resources import files
from typing import Any

TEMPLATE = "template"


def seeded_rng(*parts: object) -> random.Random:
    """A random.Random seeded by a stable hash of `parts` (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _frozen(value: Any) -> Any:
    # JSON lists back to the tuples the generators were written for (immutable, as before).
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    return value


def template_words(path: str) -> dict[str, Any]:
    """One word-list file of the package data (e.g. "template_data/topics.json"), lists as tuples."""
    return _frozen(json.loads(files("emoneurons.backends").joinpath(path).read_text(encoding="utf-8")))
