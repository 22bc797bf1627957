"""steer.json's typed reading (io/steer_file.py): a record of the steer stage's shape reads back
with its settings and each emotion's conditions; a broken one is one line naming the file and the
key; a file from before coherence and judges still reads."""

from __future__ import annotations

import json

import pytest

from emoneurons.io.records import RecordError
from emoneurons.io.steer_file import parse_steer, read_steer
from emoneurons.io.tables import DataError
from helpers.figure_layout import steer_json


def test_a_steer_record_reads_back_typed(tmp_path):
    record = steer_json()
    path = tmp_path / "steer.json"
    path.write_text(json.dumps(record))
    steer = read_steer(path)
    assert (steer.source, steer.top_rate, steer.alphas, steer.control_draws) == (str(path), 0.01, (0, 4, 8), 1)
    assert len(steer.prompts) == 30 and steer.judge_names() == [] and steer.coherence["ngram"] == 2
    assert set(steer.emotions) == set(record["emotions"])
    anger = steer.emotions["anger"]
    raw = record["emotions"]["anger"]
    assert anger.n_neurons == raw["n_neurons"] and len(anger.steered) == 3 and len(anger.controls) == 3
    eight = next(s for s in anger.steered if s.alpha == 8)
    raw8 = next(s for s in raw["steered"] if s["alpha"] == 8)
    assert (eight.share_shift, eight.logp_shift, eight.draw) == (raw8["share_shift"], raw8["logp_shift"], None)
    assert eight.value("coherence.logp_per_token_shift") == raw8["coherence"]["logp_per_token_shift"]
    assert eight.value("share_shift") == raw8["share_shift"] and eight.text_broke() == raw8["coherence"]["text_broke"]
    assert [c.draw for c in anger.controls_at(8)] == [0] and anger.controls_at(2) == []


def test_a_file_from_before_coherence_and_judges_still_reads():
    record = steer_json()
    record.pop("coherence")
    record.pop("judges")
    for entry in record["emotions"].values():
        for condition in entry["steered"] + entry["controls"]:
            condition.pop("coherence")
            condition.pop("judges")
    steer = parse_steer(record)
    step = steer.emotions["anger"].steered[0]
    assert steer.coherence is None and steer.judge_names() == []
    assert step.coherence is None and step.judges == {} and step.value("coherence.text_broke") is None
    assert not step.text_broke()


@pytest.mark.parametrize(("change", "line"), [
    (lambda r: r.pop("emotions"), "emotions is missing"),
    (lambda r: r.pop("alphas"), "alphas is missing"),
    (lambda r: r.update(control_draws="1"), "control_draws: '1' is not an integer"),
    (lambda r: r.update(prompts=["a", 2]), "prompts: not a list of strings"),
    (lambda r: r["emotions"].update(joy={}), "emotions: 'joy': allowed: anger, disgust, fear, happiness, sadness, surprise"),
    (lambda r: r["emotions"]["anger"].pop("n_neurons"), "emotions.anger: n_neurons is missing"),
    (lambda r: r["emotions"]["anger"]["steered"][1].pop("share_shift"), "emotions.anger.steered[1]: share_shift is missing"),
    (lambda r: r["emotions"]["anger"]["controls"][0].update(alpha="8"),
     "emotions.anger.controls[0]: alpha: '8' is not an integer or a number"),
    (lambda r: r.update(judges=[{"backend": "lexicon"}]), "judges[0]: name is missing"),
])
def test_a_broken_file_is_one_line_naming_the_file_and_the_key(tmp_path, change, line):
    record = steer_json()
    change(record)
    path = tmp_path / "steer.json"
    path.write_text(json.dumps(record))
    with pytest.raises(RecordError) as info:
        read_steer(path)
    assert str(info.value) == f"{path}: {line}"
    assert isinstance(info.value, DataError)  # the stages report it like every other bad input
