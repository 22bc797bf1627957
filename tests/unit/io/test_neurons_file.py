"""neurons.json in one place (io/neurons_file.py): select's record, its typed reading (one line naming
the file and the key), and the one lookup of a ratio's selection with its one-line error; a ratio's
identity is its key (params.ratio_key)."""

from __future__ import annotations

import json

import pytest

from emoneurons.io.neurons_file import NoSelectionError, neurons_record, parse_neurons, read_neurons
from emoneurons.io.records import RecordError
from emoneurons.io.tables import DataError
from emoneurons.params import ratio_key, same_ratio


def _record() -> dict:
    return neurons_record(top_rate=0.01, assign="argmax", layers=2, neurons_per_layer=8,
                          selections={0.005: {"entropy_threshold": 0.4, "selected": 1, "neurons": {"anger": [[0, 1]]},
                                              "per_emotion": {"anger": 1}, "per_layer": {"anger": [1, 0]}},
                                      0.01: {"selected": 3, "neurons": {"anger": [[0, 1], [1, 2]], "fear": [[1, 3]]}}})


def test_a_ratio_is_keyed_by_its_shortest_decimal():
    # `g`: six significant digits, so a ratio computed as 0.1 + 0.2 finds the "0.3" written for 0.3
    assert [ratio_key(r) for r in (0.01, 0.005, 0.1 + 0.2, 1.0, 0.5)] == ["0.01", "0.005", "0.3", "1", "0.5"]


def test_two_ratios_are_the_same_exactly_when_their_keys_are():
    assert same_ratio(0.1 + 0.2, 0.3) and same_ratio(0.01, 0.0100000001) and same_ratio(None, None)
    assert same_ratio(0.3, 0.30000004)  # 4e-8 apart, one key: the same ratio, as neurons.json keys it
    assert not same_ratio(0.01, 0.0100001) and not same_ratio(0.01, None) and not same_ratio(None, 0.01)
    # the key and the comparison agree on every pair (one notion, not two)
    ratios = [0.01, 0.0100000001, 0.0100001, 0.1 + 0.2, 0.3, 0.30000004, 0.005, 0.02]
    assert all(same_ratio(a, b) == (ratio_key(a) == ratio_key(b)) for a in ratios for b in ratios)


def test_the_record_keys_each_selection_by_its_ratio_and_reads_back_typed(tmp_path):
    record = _record()
    assert list(record) == ["top_rate", "assign", "layers", "neurons_per_layer", "ratios"]
    assert list(record["ratios"]) == ["0.005", "0.01"]
    path = tmp_path / "neurons.json"
    path.write_text(json.dumps(record))
    read = read_neurons(path)
    assert (read.source, read.top_rate, read.assign, read.layers, read.neurons_per_layer) == (str(path), 0.01, "argmax", 2, 8)
    assert read.selection(0.01).selected == 3 and read.selection(0.1 / 10).neurons["fear"] == [[1, 3]]
    assert read.selection(0.01).per_emotion_counts() == {"anger": 2, "fear": 1}
    small = read.selection(0.005)
    assert (small.entropy_threshold, small.per_emotion, small.per_layer) == (0.4, {"anger": 1}, {"anger": [1, 0]})
    assert read.selection(0.01).per_layer is None  # an older file without it still reads


def test_a_missing_ratio_is_one_line_naming_the_file_the_ratio_and_what_is_there():
    with pytest.raises(NoSelectionError) as error:
        parse_neurons(_record()).selection(0.02)
    message = str(error.value)
    assert message.startswith("data/neurons/neurons.json: no selection at ratio 0.02 (has: 0.005, 0.01); rerun select")
    assert "\n" not in message and isinstance(error.value, DataError)  # the stages catch DataError
    with pytest.raises(NoSelectionError, match=r"^x.json: no selection at ratio 0.01 \(has: none\)"):
        parse_neurons({**_record(), "ratios": {}}, "x.json").selection(0.01)


@pytest.mark.parametrize(("change", "line"), [
    (lambda r: r.pop("top_rate"), "top_rate is missing"),
    (lambda r: r.update(layers="2"), "layers: '2' is not an integer"),
    (lambda r: r.pop("ratios"), "ratios is missing"),
    (lambda r: r["ratios"]["0.01"].pop("selected"), "ratios.0.01: selected is missing"),
    (lambda r: r["ratios"]["0.01"]["neurons"].update(joy=[]), "ratios.0.01: neurons: 'joy': allowed: anger, disgust, "
                                                              "fear, happiness, sadness, surprise"),
    (lambda r: r["ratios"]["0.01"]["neurons"].update(fear=[[1]]), "ratios.0.01: neurons.fear: not a list of [layer, index] pairs"),
    (lambda r: r["ratios"].update({"0.02": []}), "ratios.0.02: not a JSON object"),
])
def test_a_broken_file_is_one_line_naming_the_file_and_the_key(tmp_path, change, line):
    record = _record()
    change(record)
    path = tmp_path / "neurons.json"
    path.write_text(json.dumps(record))
    with pytest.raises(RecordError) as info:
        read_neurons(path)
    assert str(info.value) == f"{path}: {line}"
    assert isinstance(info.value, DataError)


def test_a_missing_file_is_the_tables_one_line(tmp_path):
    with pytest.raises(DataError, match=r"neurons.json: file not found"):
        read_neurons(tmp_path / "neurons.json")
