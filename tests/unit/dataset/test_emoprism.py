"""The paper's released data set (EmoPrism) as the filter stage's source."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import polars as pl
import pytest

from emoneurons.dataset.emoprism import read_emoprism
from emoneurons.io.tables import DataError
from emoneurons.params import ParamsError, parse_params, require_under
from helpers.repo_params import params_dict, params_yaml
from helpers.stage_runner import run_stage_script
from helpers.synthetic_inputs import sample_records


def test_read_emoprism_normalises_labels_and_keeps_repeats_distinct(tmp_path):
    records = sample_records()
    records[0]["dialogue"] = "A: Hello there.  B: Hi, all good."  # turns on one line: repaired
    records.append(dict(records[1]))  # a second dialogue of the same (topic, theme)
    (tmp_path / "e.json").write_text(json.dumps(records))
    data = read_emoprism(tmp_path / "e.json")
    df, judges = data.table()
    assert list(data.judges) == list(judges) == ["gpt_4o_mini", "gemini_1_5_flash", "claude_3_haiku"]
    assert judges["gemini_1_5_flash"][:2] == ["anger", "disgust"]
    assert judges["claude_3_haiku"][:2] == ["anger", None]  # no emotion word: no label
    assert df.height == 13 and df["id"].n_unique() == 13 and data.records == 13
    assert df["dialogue"][0] == "A: Hello there.\nB: Hi, all good."
    assert set(df["backend"]) == {"emoprism"} and data.label_not_theme == 0


def test_the_released_gzip_file_is_read_as_it_is(tmp_path):
    """The co-author release is emoprism.json.gz: told by its bytes, whatever its name says."""
    import gzip
    records = sample_records()
    (tmp_path / "e.json").write_text(json.dumps(records))
    (tmp_path / "emoprism.json.gz").write_bytes(gzip.compress(json.dumps(records).encode()))
    (tmp_path / "renamed.json").write_bytes(gzip.compress(json.dumps(records).encode()))
    plain = read_emoprism(tmp_path / "e.json").table()
    for name in ("emoprism.json.gz", "renamed.json"):
        zipped = read_emoprism(tmp_path / name).table()
        assert zipped[0].equals(plain[0]) and zipped[1] == plain[1]


def test_a_truncated_gzip_file_fails_in_one_line(tmp_path):
    import gzip
    whole = gzip.compress(json.dumps(sample_records()).encode())
    (tmp_path / "e.json.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"e\.json\.gz: a gzip file that does not decompress"):
        read_emoprism(tmp_path / "e.json.gz")


def test_json_lines_and_a_wrapping_object_are_read_too(tmp_path):
    records = sample_records()
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (tmp_path / "w.json").write_text(json.dumps({"data": records}))
    assert read_emoprism(tmp_path / "e.jsonl").table()[0].equals(read_emoprism(tmp_path / "w.json").table()[0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: [x.pop("theme") for x in r], r"e\.json: no key 'theme' in the records"),
        (lambda r: r[3].pop("theme"), r"e\.json: 'theme' must be one of .*; not so in record 3 \(1 in all\)"),
        (lambda r: r[2].update(theme="joy"), r"e\.json: 'theme' must be one of anger, .*; not so in record 2 \(1 in all\)"),
        (lambda r: r[5].update(dialogue="Once upon a time there was a dog."), r"e\.json: 'dialogue' must be an A:/B: dialogue; not so in record 5"),
        (lambda r: [x.update(topic="") for x in r], r"'topic' must be a non-empty string; not so in records 0, 1, 2 \.\.\. \(12 in all\)"),
    ],
)
def test_bad_records_fail_in_one_line_naming_the_file(tmp_path, change, message):
    records = sample_records()
    change(records)
    (tmp_path / "e.json").write_text(json.dumps(records))
    with pytest.raises(DataError, match=message):
        read_emoprism(tmp_path / "e.json")


def test_named_judge_columns_must_exist(tmp_path):
    (tmp_path / "e.json").write_text(json.dumps(sample_records()))
    assert list(read_emoprism(tmp_path / "e.json", ["claude-3-haiku"]).judges) == ["claude_3_haiku"]
    with pytest.raises(DataError, match=r"judge column\(s\) 'gpt4' not in the records"):
        read_emoprism(tmp_path / "e.json", ["gpt4"])


def test_path_must_be_under_data_external(tmp_path):
    with pytest.raises(ParamsError, match=r"filter\.emoprism\.path: must be a relative path inside the project"):
        parse_params(params_dict({"filter": {"source": "emoprism", "emoprism": {"path": "/tmp/emoprism.json"}}}))
    # The folder is the filter stage's (its --external option, a dep in dvc.yaml), checked before any work.
    require_under("data/external", "filter.emoprism.path", "data/external/emoprism.json")
    for path in ("data/emoprism.json", "data/external", "data/external/../emoprism.json"):
        with pytest.raises(ParamsError, match=r"^params.yaml: filter\.emoprism\.path: must be a file under data/external/ "):
            require_under("data/external", "filter.emoprism.path", path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "emoprism.json").write_text(json.dumps(sample_records()))
    result = _filter(tmp_path, {"filter": {"source": "emoprism", "emoprism": {"path": "data/emoprism.json"}}})
    assert result.returncode == 1 and result.stderr.startswith("params.yaml: filter.emoprism.path: must be a file under data/external/ ")
    assert not (tmp_path / "reports").exists()


def _filter(tmp_path: Path, overrides: dict) -> subprocess.CompletedProcess:
    (tmp_path / "params.yaml").write_text(params_yaml(overrides))
    return run_stage_script("filter", cwd=tmp_path)


def test_filter_stage_reads_emoprism_with_the_papers_rule(tmp_path):
    (tmp_path / "data" / "external").mkdir(parents=True)
    records = sample_records()
    records[0]["label"] = "fear"  # the released label is only reported on
    (tmp_path / "data" / "external" / "emoprism.json").write_text(json.dumps(records))
    result = _filter(tmp_path, {"filter": {"source": "emoprism", "min_agree": 3}})
    assert result.returncode == 0, result.stderr
    kept = pl.read_parquet(tmp_path / "data" / "filtered.parquet")
    report = json.loads((tmp_path / "reports" / "filter.json").read_text())
    # 3 of 4 labels: the unanimous dialogue of each emotion stays, the 2-of-4 one goes.
    assert kept.height == 6 and (kept["n_agree"] == 4).all()
    assert report["generated"] == 12 and report["dropped"] == 6
    assert report["judges"] == ["gpt_4o_mini", "gemini_1_5_flash", "claude_3_haiku"]
    assert report["judge_agreement"] == {"gpt_4o_mini": 1.0, "gemini_1_5_flash": 0.5, "claude_3_haiku": 0.5}
    assert report["source"] == {"emoprism": "data/external/emoprism.json", "label_not_theme": 1}
    assert report["kappa"]["fleiss"] is not None


def test_filter_stage_rejects_min_agree_beyond_the_files_labels_and_writes_nothing(tmp_path):
    (tmp_path / "data" / "external").mkdir(parents=True)
    (tmp_path / "data" / "external" / "emoprism.json").write_text(json.dumps(sample_records()))
    result = _filter(tmp_path, {"filter": {"source": "emoprism", "min_agree": 5}})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "filter.min_agree: must be between 1 and 4 (the intended emotion plus the 3 judge columns of "
        "data/external/emoprism.json), got 5"
    ]
    assert not (tmp_path / "data" / "filtered.parquet").exists() and not (tmp_path / "reports").exists()
    assert not (tmp_path / "data" / "cache").exists()


def test_filter_stage_names_a_missing_file(tmp_path):
    result = _filter(tmp_path, {"filter": {"source": "emoprism"}})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "data/external/emoprism.json: file not found (filter.emoprism names the released EmoPrism JSON)"
    ]
