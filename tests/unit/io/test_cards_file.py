"""cards.json's typed reading (io/cards_file.py): the settings and each emotion's cards read back,
the top tokens card by card; a broken one is one line naming the file and the key."""

from __future__ import annotations

import json

import pytest

from emoneurons.io.cards_file import parse_cards, read_cards
from emoneurons.io.records import RecordError


def _record() -> dict:
    card = {"layer": 1, "index": 2, "top_tokens": [{"token": " on", "id": 3}, {"token": "Ġhappy", "id": 4}]}
    return {"model": "m", "top_rate": 0.01, "top_neurons": 2, "contexts": 3,
            "emotions": {"anger": {"selected": 2, "cards": [card, {"layer": 0, "index": 5, "top_tokens": []}]},
                         "fear": {"selected": 0, "cards": []}}}


def test_a_cards_record_reads_back_typed(tmp_path):
    path = tmp_path / "cards.json"
    path.write_text(json.dumps(_record()))
    cards = read_cards(path)
    assert (cards.source, cards.model, cards.top_rate, cards.top_neurons, cards.contexts) == (str(path), "m", 0.01, 2, 3)
    assert cards.emotions["anger"].selected == 2 and cards.emotions["anger"].top_tokens() == [" on", "Ġhappy"]
    assert cards.cards_of("anger")[0]["layer"] == 1 and cards.cards_of("fear") == () and cards.cards_of("surprise") == ()


@pytest.mark.parametrize(("change", "line"), [
    (lambda r: r.pop("emotions"), "emotions is missing"),
    (lambda r: r.pop("top_neurons"), "top_neurons is missing"),
    (lambda r: r["emotions"].update(joy={"cards": []}), "emotions: 'joy': allowed: anger, disgust, fear, happiness, sadness, surprise"),
    (lambda r: r["emotions"]["fear"].pop("cards"), "emotions.fear: cards is missing"),
    (lambda r: r["emotions"]["anger"]["cards"][0]["top_tokens"][1].pop("token"),
     "emotions.anger.cards[0].top_tokens[1]: token is missing"),
    (lambda r: r["emotions"]["anger"]["cards"].append(7), "emotions.anger.cards[2]: not a JSON object"),
    (lambda r: r["emotions"]["anger"]["cards"][0]["top_tokens"][0].update(token=7),
     "emotions.anger.cards[0].top_tokens[0]: token: 7 is not a string"),
])
def test_a_broken_file_is_one_line_naming_the_file_and_the_key(change, line):
    record = _record()
    change(record)
    with pytest.raises(RecordError) as info:
        parse_cards(record, "x/cards.json")
    assert str(info.value) == f"x/cards.json: {line}"
