"""neurons.json in one place (io/neurons_file.py): the ratio key, select's record, and the one
lookup of a ratio's selection with its one-line error."""

from __future__ import annotations

import pytest

from emoneurons.io.neurons_file import NoSelectionError, neurons_record, ratio_key, selected_per_emotion, selection_at
from emoneurons.io.tables import DataError


def test_a_ratio_is_keyed_by_its_shortest_decimal():
    # `g`: six significant digits, so a ratio computed as 0.1 + 0.2 finds the "0.3" written for 0.3
    assert [ratio_key(r) for r in (0.01, 0.005, 0.1 + 0.2, 1.0, 0.5)] == ["0.01", "0.005", "0.3", "1", "0.5"]


def test_the_record_keys_each_selection_by_its_ratio_and_the_lookup_finds_it():
    record = neurons_record(top_rate=0.01, assign="argmax", layers=2, neurons_per_layer=8,
                            selections={0.005: {"neurons": {"anger": [[0, 1]]}, "selected": 1},
                                        0.01: {"neurons": {"anger": [[0, 1], [1, 2]], "fear": [[1, 3]]}, "selected": 3}})
    assert list(record) == ["top_rate", "assign", "layers", "neurons_per_layer", "ratios"]
    assert list(record["ratios"]) == ["0.005", "0.01"]
    assert selection_at(record, 0.01)["selected"] == 3
    assert selected_per_emotion(record, 0.01) == {"anger": 2, "fear": 1}


def test_a_missing_ratio_is_one_line_naming_the_file_the_ratio_and_what_is_there():
    with pytest.raises(NoSelectionError) as error:
        selection_at({"ratios": {"0.01": {}, "0.005": {}}}, 0.02)
    message = str(error.value)
    assert message.startswith("data/neurons/neurons.json: no selection at ratio 0.02 (has: 0.005, 0.01); rerun select")
    assert "\n" not in message and isinstance(error.value, DataError)  # the stages catch DataError
    with pytest.raises(NoSelectionError, match=r"\(has: none\)"):
        selection_at({}, 0.01)
