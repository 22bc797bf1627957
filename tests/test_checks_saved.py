"""Each stage saves the record of its data checks (which expectations ran on which file, which
passed) beside its outputs; a failed expectation stops the stage naming it and the rows' ids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from repo_params import params_yaml

from emoneurons.data.suites import DataCheckError, check_dialogues, checks_path, checks_record

REPO = Path(__file__).resolve().parents[1]


def test_the_record_sits_beside_the_output():
    assert checks_path("data/dialogues.parquet") == Path("data/dialogues.checks.json")
    assert checks_path(Path("data/split")) == Path("data/split/checks.json")
    record = checks_record([{"file": "f", "expectation": "e", "column": None, "passed": True}])
    assert (record["ran"], record["passed"]) == (1, 1)


@pytest.mark.slow
def test_generate_saves_what_it_checked_and_a_bad_row_is_named_by_id(tmp_path):
    (tmp_path / "data").mkdir()
    pl.DataFrame({"topic": ["Dogs", "rain"], "round": [0, 0], "parent": [None, None]},
                 schema={"topic": pl.String, "round": pl.Int64, "parent": pl.String}).write_parquet(tmp_path / "data" / "topics.parquet")
    (tmp_path / "params.yaml").write_text(params_yaml({"generate": {"per_pair": 1}}))
    result = subprocess.run([sys.executable, str(REPO / "stages" / "generate.py")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "data" / "dialogues.checks.json").read_text())
    assert record["ran"] == record["passed"] == len(record["expectations"]) >= 9
    ran = {(e["expectation"], e["column"]) for e in record["expectations"]}
    assert {("expect_column_values_to_be_unique", "id"), ("expect_column_values_to_be_in_set", "theme"),
            ("expect_column_values_to_match_regex", "dialogue")} <= ran
    assert {e["file"] for e in record["expectations"]} == {"data/dialogues.parquet"}
    # The same table with one dialogue broken: the expectation and the row's id are named.
    df = pl.read_parquet(tmp_path / "data" / "dialogues.parquet")
    bad_id = df["id"][3]
    broken = df.with_columns(pl.when(pl.col("id") == bad_id).then(pl.lit("A: Hi.\nThey leave.")).otherwise(pl.col("dialogue")).alias("dialogue"))
    with pytest.raises(DataCheckError) as info:
        check_dialogues(broken, source="data/dialogues.parquet")
    assert "expect_column_values_to_match_regex failed" in str(info.value) and f"(id {bad_id!r})" in str(info.value)

