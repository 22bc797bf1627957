"""io/json_records.py: a JSON file's records read one at a time, whatever the shape and wherever
the pieces it reads end; damage anywhere is one line naming the record and the key."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from emoneurons.io import json_records
from emoneurons.io.json_records import RecordReader
from emoneurons.io.tables import DataError
from helpers.synthetic_inputs import emoprism_record, sample_records

RECORDS = [emoprism_record(f"topic {i}", "fear", "fear", "Fear.", "[fear]",
                           dialogue=f"A: Record {i} says \"hi\" \u00e9\\u00e9.\nB: {'ok ' * (i % 7)}yes.") for i in range(40)]


@pytest.fixture(params=[7, 64, 1 << 20], ids=["piece 7", "piece 64", "piece 1 MiB"])
def piece(request, monkeypatch):
    """Pieces so small that records, strings and escapes straddle their ends."""
    monkeypatch.setattr(json_records, "PIECE", request.param)
    return request.param


def _records(path):
    return [record for _, record in RecordReader(path)]


@pytest.mark.parametrize("shape", ["array", "indented", "gzip", "lines", "object"])
def test_every_shape_gives_the_records_json_loads_gives(tmp_path, piece, shape):
    text = {"array": json.dumps(RECORDS), "indented": json.dumps(RECORDS, indent=2), "gzip": json.dumps(RECORDS),
            "lines": "\n".join(json.dumps(r) for r in RECORDS) + "\n",
            "object": json.dumps({"version": [1, 2], "meta": {"n": 40}, "data": RECORDS, "note": "x"})}[shape]
    data = gzip.compress(text.encode()) if shape == "gzip" else ("\ufeff" + text).encode()
    (tmp_path / "e.json").write_bytes(data)
    assert _records(tmp_path / "e.json") == RECORDS
    assert [index for index, _ in RecordReader(tmp_path / "e.json")] == list(range(40))


def test_a_file_cut_anywhere_is_one_line_naming_the_record(tmp_path, piece):
    text = json.dumps(RECORDS, indent=1)
    rng = random.Random(0)
    for cut in sorted(rng.sample(range(2, len(text) - 3), 25)):
        (tmp_path / "e.json").write_text(text[:cut])
        with pytest.raises(DataError) as info:
            _records(tmp_path / "e.json")
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"{tmp_path / 'e.json'}: "), message
        # the record it was reading when the text ended: the last one whose start lies before the cut
        index = text[:cut].count('\n {') - 1
        if text[:cut].rstrip().endswith("}"):  # a record ends the text: no ',' or ']' after it
            assert f"after record {index}: expected ',' or ']'" in message and "the file ends (truncated)" in message, message
        else:  # inside a record, or after a ',' where the next one should start
            index += text[:cut].rstrip().endswith("},")
            assert f"record {index} (from line" in message and "(truncated: the file ends inside it)" in message, message


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda t: t.replace('"theme": "fear"', '"theme": fear', 1), r"record 0 \(from line 1\), key 'theme': not valid JSON: Expecting value at line 1, column \d+$"),
        (lambda t: t.replace('"topic 17"', '"topic\x0117"'), r"record 17 \(from line 1\), key 'topic': not valid JSON: Invalid control character at line 1, column \d+$"),
        (lambda t: t.replace('"topic 9", ', '"topic 9" ', 1), r"record 9 \(from line 1\), after key 'topic': not valid JSON: Expecting ',' delimiter"),
        (lambda t: t.replace("}, {", "} {", 1), r"after record 0: expected ',' or '\]' at line 1, column \d+, found '\{'$"),
        (lambda t: t + " []", r"more text after the array of records at line 1, column \d+"),
    ],
)
def test_a_malformed_record_in_the_middle_is_one_line_naming_it_and_its_key(tmp_path, piece, damage, message):
    (tmp_path / "e.json").write_text(damage(json.dumps(RECORDS)))
    with pytest.raises(DataError, match=message):
        _records(tmp_path / "e.json")


def test_bytes_that_are_not_utf8_or_gzip_that_does_not_decompress_name_the_file(tmp_path, piece):
    data = json.dumps(RECORDS).encode()
    (tmp_path / "latin.json").write_bytes(data[:500] + b"\xe9" + data[500:])
    with pytest.raises(DataError, match=r"latin\.json: not UTF-8 text at byte 500 "):
        _records(tmp_path / "latin.json")
    zipped = gzip.compress(data)
    (tmp_path / "cut.json.gz").write_bytes(zipped[: len(zipped) // 2])
    with pytest.raises(DataError, match=r"cut\.json\.gz: a gzip file that does not decompress \(.*\), \d+ records read"):
        _records(tmp_path / "cut.json.gz")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  ", "empty"),
        ('"records"', r"not valid JSON at line 1, column 1: expected a JSON array of records or JSON Lines"),
        (json.dumps(sample_records()[0]), "a JSON object must hold exactly one array of records, found 0"),
        (json.dumps({"a": sample_records(), "b": sample_records()}), "a JSON object must hold exactly one array of records, found 2"),
        ("\n".join(json.dumps(r) for r in sample_records()[:3]) + '\n{"topic": "x", "the',
         r"record 3 \(line 4\), after key 'topic': not valid JSON in a JSON Lines file: .* \(truncated: the file ends inside it\)"),
    ],
)
def test_files_that_hold_no_records_say_what_they_hold(tmp_path, text, message):
    (tmp_path / "e.json").write_text(text)
    with pytest.raises(DataError, match=message):
        _records(tmp_path / "e.json")


def test_memory_is_a_piece_not_the_file(tmp_path, monkeypatch):
    """The text window never holds much more than two pieces, however many records are read."""
    monkeypatch.setattr(json_records, "PIECE", 4096)
    (tmp_path / "e.json").write_text(json.dumps(RECORDS * 50))
    largest = 0
    original = json_records._Text.more

    def more(self):
        nonlocal largest
        grew = original(self)
        largest = max(largest, len(self.buf))
        return grew

    monkeypatch.setattr(json_records._Text, "more", more)
    assert len(_records(tmp_path / "e.json")) == 2000
    assert largest < 3 * 4096 and (tmp_path / "e.json").stat().st_size > 100 * 4096
