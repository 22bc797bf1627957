"""Each stage saves the record of its data checks (which expectations ran on which file, which
passed) beside its outputs; a failed expectation stops the stage naming it and the rows' ids."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from emoneurons.io.suites import DataCheckError, check_dialogues, checks_path, checks_record
from emoneurons.runtime.stage_run import stage_ending
from helpers.repo_params import params_yaml
from helpers.stage_runner import REPO, run_stage_script


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
    result = run_stage_script("generate", cwd=tmp_path)
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

    from emoneurons.io.result_suites import check_evaluation
    from helpers.stage_runner import stage_main
    from helpers.synthetic_inputs import synthetic_neurons, synthetic_split, write_synthetic_counts
    from helpers.tiny_models import build_tiny_llama

    model = build_tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "split").mkdir()
    synthetic_split(3).write_parquet(tmp_path / "split" / "train.parquet")
    synthetic_split(1, offset=10).write_parquet(tmp_path / "split" / "test.parquet")
    neurons = synthetic_neurons(ratios=(0.02,), layers=model.config.num_hidden_layers, per_layer=model.config.intermediate_size)
    (tmp_path / "neurons.json").write_text(json.dumps(neurons))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(id=str(tmp_path / "model"), batch_size=6)
    params["select"]["top_rate"] = 0.02
    params["eval"].update(ratios=[0.02], layer_ranges=["all"], control_draws=1, bootstrap=50, calibration_per_emotion=1,
                          null_draws=2, controls=["matched", "uniform"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_synthetic_counts(tmp_path / "counts", model.config.num_hidden_layers, model.config.intermediate_size)
    stage_main("mask_eval")(params=tmp_path / "params.yaml", split=tmp_path / "split", neurons=tmp_path / "neurons.json",
                            counts=tmp_path / "counts", out=tmp_path / "metrics", checkpoints=tmp_path / "ckpt")
    record = json.loads((tmp_path / "metrics" / "eval.checks.json").read_text())
    assert record["ran"] == record["passed"] == len(record["expectations"]) >= 20
    assert {e["file"] for e in record["expectations"]} == {"reports/metrics/eval.json"}
    assert ("expect_column_distinct_values_to_contain_set", "id") in {(e["expectation"], e["column"]) for e in record["expectations"]}
    evaluation = json.loads((tmp_path / "metrics" / "eval.json").read_text())
    planned = [c["id"] for c in evaluation["conditions"]]
    assert len(planned) == 1 + 6 + 12  # unmodified, one mask and one control of each kind per emotion
    assert evaluation["draw_null"]["kind"] == "matched" and len(evaluation["draw_null"]["conditions"]) == 6
    evaluation["conditions"] = [c for c in evaluation["conditions"] if c["id"] != "mask-fear-r0.02-all"]
    with pytest.raises(DataCheckError) as info:
        check_evaluation(evaluation, planned, 6, source="reports/metrics/eval.json")
    assert "expect_column_distinct_values_to_contain_set failed: missing 'mask-fear-r0.02-all'" in str(info.value)


@pytest.mark.slow
def test_select_and_cards_save_what_they_checked(tmp_path, tiny_tokenizer):
    """select then cards on the tiny random Llama with made-up counts: checks.json beside
    neurons.json and cards.json, every check passed."""
    import torch
    import yaml
    from safetensors.torch import save_file

    from helpers.stage_runner import stage_main
    from helpers.synthetic_inputs import synthetic_split
    from helpers.tiny_models import build_tiny_llama

    model = build_tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    synthetic_split(2).write_parquet(tmp_path / "train.parquet")
    generator = torch.Generator().manual_seed(0)
    T = torch.full((6,), 100, dtype=torch.int64)
    f = torch.randint(0, 101, (model.config.num_hidden_layers, model.config.intermediate_size, 6), generator=generator)
    (tmp_path / "counts").mkdir()
    save_file({"f": f, "T": T}, tmp_path / "counts" / "counts.safetensors")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(id=str(tmp_path / "model"), batch_size=6)
    params["select"].update(top_rate=0.1, filter_rate=0.5, activation_bar_ratio=0.5)
    params["eval"]["ratios"] = [0.1]
    params["cards"].update(top_neurons=2, contexts=2, window=4, top_tokens=2, min_token_count=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage_main("select_neurons")(params=tmp_path / "params.yaml", counts=tmp_path / "counts", out=tmp_path / "neurons",
                                 metrics=tmp_path / "neurons-metrics.json")
    stage_main("cards")(params=tmp_path / "params.yaml", train=tmp_path / "train.parquet", counts=tmp_path / "counts",
                        neurons=tmp_path / "neurons" / "neurons.json", out=tmp_path / "cards")
    for checks, source in ((tmp_path / "neurons" / "checks.json", "data/neurons/neurons.json"),
                           (tmp_path / "cards" / "checks.json", "reports/cards/cards.json")):
        record = json.loads(checks.read_text())
        assert record["ran"] == record["passed"] == len(record["expectations"]) >= 8, checks
        assert {e["file"] for e in record["expectations"]} == {source}
    cards = json.loads((tmp_path / "cards" / "cards.json").read_text())
    assert sum(len(e["cards"]) for e in cards["emotions"].values()) > 0  # the checks ran on real cards


def test_select_stops_on_a_failed_check_naming_it_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """Fault injection: a selection listing a neuron past the layer's width stops select with the
    expectation and the neuron's id, before neurons.json or checks.json is written."""
    import dataclasses

    import torch
    import yaml
    from safetensors.torch import save_file

    from emoneurons.neurons.selection import select_emotion_neurons
    from helpers.stage_runner import stage_main

    T = torch.full((6,), 10, dtype=torch.int64)
    f = torch.zeros(2, 4, 6, dtype=torch.int64)
    f[0, 0, 0] = f[1, 3, 5] = 10
    (tmp_path / "counts").mkdir()
    save_file({"f": f, "T": T}, tmp_path / "counts" / "counts.safetensors")
    params = yaml.safe_load((REPO / "params.yaml").read_text())  # whole: a params file states every key
    params["select"]["top_rate"] = 0.25
    params["eval"]["ratios"] = [0.25]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    def past_the_width(*args, **kwargs):
        selection = select_emotion_neurons(*args, **kwargs)
        return dataclasses.replace(selection, neurons={**selection.neurons, "anger": [[0, 4]]})

    main = stage_main("select_neurons")
    monkeypatch.setitem(main.__globals__, "select_emotion_neurons", past_the_width)
    with pytest.raises(SystemExit) as stopped, stage_ending("select"):
        main(params=tmp_path / "params.yaml", counts=tmp_path / "counts", out=tmp_path / "neurons",
             metrics=tmp_path / "neurons-metrics.json")
    assert stopped.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("data/neurons/neurons.json: column 'index': expect_column_values_to_be_between failed")
    assert "(id 'ratio 0.25 anger (0, 4)')" in err and "\n" not in err
    assert not (tmp_path / "neurons").exists() and not (tmp_path / "neurons-metrics.json").exists()
