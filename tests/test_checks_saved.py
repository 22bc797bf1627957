"""Each stage saves the record of its data checks (which expectations ran on which file, which
passed) beside its outputs; a failed expectation stops the stage naming it and the rows' ids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

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
    (tmp_path / "params.yaml").write_text("generate: {per_pair: 1}\n")
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



@pytest.mark.slow
def test_mask_eval_saves_what_it_checked_and_a_missing_condition_is_named(tmp_path, tiny_tokenizer):
    """mask-eval on the tiny random Llama: eval.checks.json beside eval.json, every check passed;
    the same results with one planned condition dropped fail, naming it."""
    import yaml
    from conftest import build_tiny_llama
    from test_conditions import _split, synthetic_neurons
    from test_distributed import stage_main

    from emoneurons.data.suites import check_evaluation

    model = build_tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "split").mkdir()
    _split(3).write_parquet(tmp_path / "split" / "train.parquet")
    _split(1, offset=10).write_parquet(tmp_path / "split" / "test.parquet")
    neurons = synthetic_neurons(ratios=(0.02,), layers=model.config.num_hidden_layers, per_layer=model.config.intermediate_size)
    (tmp_path / "neurons.json").write_text(json.dumps(neurons))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(id=str(tmp_path / "model"), batch_size=6)
    params["select"]["top_rate"] = 0.02
    params["eval"].update(ratios=[0.02], layer_ranges=["all"], control_draws=1, bootstrap=50, calibration_per_emotion=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage_main("mask_eval")(params=tmp_path / "params.yaml", split=tmp_path / "split", neurons=tmp_path / "neurons.json",
                            out=tmp_path / "metrics", checkpoints=tmp_path / "ckpt")
    record = json.loads((tmp_path / "metrics" / "eval.checks.json").read_text())
    assert record["ran"] == record["passed"] == len(record["expectations"]) >= 20
    assert {e["file"] for e in record["expectations"]} == {"reports/metrics/eval.json"}
    assert ("expect_column_distinct_values_to_contain_set", "id") in {(e["expectation"], e["column"]) for e in record["expectations"]}
    evaluation = json.loads((tmp_path / "metrics" / "eval.json").read_text())
    planned = [c["id"] for c in evaluation["conditions"]]
    assert len(planned) == 1 + 6 + 6  # unmodified, one mask and one control per emotion
    evaluation["conditions"] = [c for c in evaluation["conditions"] if c["id"] != "mask-fear-r0.02-all"]
    with pytest.raises(DataCheckError) as info:
        check_evaluation(evaluation, planned, 6, source="reports/metrics/eval.json")
    assert "expect_column_distinct_values_to_contain_set failed: missing 'mask-fear-r0.02-all'" in str(info.value)
