"""reports/cards/cards.json, the cards stage's output, read in one place: its typed reading, checked
on read (one line naming the file and the key), for report.md's cards link and the atlas's token
profiles. The shape is in docs/CONTRACTS.md, the path and who writes and reads it in io/artifacts.py;
each card stays the record the stage wrote (the cards page renders it whole)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoneurons.io.artifacts import CARDS
from emoneurons.io.records import emotions_field, field, json_object
from emoneurons.io.tables import read_json


@dataclass(frozen=True)
class EmotionCards:
    """An emotion's entry of `emotions`: how many neurons it has selected and its cards."""

    selected: int | None
    cards: tuple[Mapping[str, Any], ...]

    def top_tokens(self) -> list[str]:
        """Every card's top tokens, as written (" on"), card by card."""
        return [entry["token"] for card in self.cards for entry in card.get("top_tokens") or []]


@dataclass(frozen=True)
class CardsFile:
    """cards.json as read: the settings the cards were made with and each emotion's cards
    (emotions without an entry left out). `source` names the file in errors."""

    source: str
    model: str | None
    top_rate: float | None
    top_neurons: int
    contexts: int
    emotions: Mapping[str, EmotionCards]

    def cards_of(self, emotion: str) -> tuple[Mapping[str, Any], ...]:
        entry = self.emotions.get(emotion)
        return entry.cards if entry else ()


def _emotion(entry: Any, where: str) -> EmotionCards:
    entry = json_object(entry, where)
    cards = field(entry, "cards", (list,), where, required=True)
    for i, card in enumerate(cards):
        card = json_object(card, f"{where}.cards[{i}]")
        for j, token in enumerate(field(card, "top_tokens", (list,), f"{where}.cards[{i}]") or []):
            field(json_object(token, f"{where}.cards[{i}].top_tokens[{j}]"), "token", (str,),
                  f"{where}.cards[{i}].top_tokens[{j}]", required=True)
    return EmotionCards(selected=field(entry, "selected", (int,), where), cards=tuple(cards))


def parse_cards(record: Any, source: str = CARDS.path) -> CardsFile:
    """cards.json's parsed JSON, checked: RecordError naming `source` and the key on the first
    missing or ill-typed one."""
    record = json_object(record, source)
    emotions = emotions_field(record, source)
    top_rate = field(record, "top_rate", (int, float), source)
    return CardsFile(
        source=source, model=field(record, "model", (str,), source),
        top_rate=None if top_rate is None else float(top_rate),
        top_neurons=field(record, "top_neurons", (int,), source, required=True),
        contexts=field(record, "contexts", (int,), source, required=True),
        emotions={emotion: _emotion(entry, f"{source}: emotions.{emotion}") for emotion, entry in emotions.items()},
    )


def read_cards(path: str | Path = CARDS.path) -> CardsFile:
    """cards.json at `path`, read and checked (DataError naming the file when it is missing or not JSON)."""
    return parse_cards(read_json(path), str(path))
