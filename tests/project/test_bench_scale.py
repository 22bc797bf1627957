"""bench/scale_run.py, the pipeline at the paper's data volume, kept in the suite at a small size: a
synthetic EmoPrism file of 600 records through filter, split and count under DVC in a scratch
project, with each stage's wall time, peak RSS and count's tokens/s recorded and summed up."""

from __future__ import annotations

import importlib.util
import json

import pytest
import typer
import yaml

from helpers.stage_runner import REPO


def _bench():
    spec = importlib.util.spec_from_file_location("scale_run", REPO / "bench" / "scale_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_synthetic_file_has_the_release_schema_and_label_shares(tmp_path):
    bench = _bench()
    assert bench.emotion_counts(293_725) == bench.RELEASE_COUNTS
    counts = bench.emotion_counts(1000)
    assert sum(counts.values()) == 1000 and counts == {"anger": 167, "disgust": 168, "fear": 171, "happiness": 187,
                                                       "sadness": 175, "surprise": 132}
    bench.write_emoprism(tmp_path / "e.json", 300, seed=3)
    records = json.loads((tmp_path / "e.json").read_text())
    assert len(records) == 300 and records == list(bench.synthetic_records(300, seed=3))
    assert {tuple(r) for r in records} == {("topic", "dialogue", "theme", *bench.JUDGES, "label")}
    turns = [len(r["dialogue"].splitlines()) for r in records]
    assert min(turns) >= 6 and max(turns) <= 12
    assert 1000 < (tmp_path / "e.json").stat().st_size / 300 < 1500  # the release: 376 MB / 293,725 records


def test_a_small_run_through_dvc_records_every_stage(tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "runs"
    bench.main(records=600, fractions="1", until="count", out=out, kill_count_after=None, seed=0,
               settings=["split.seed=7"])
    result = json.loads((out / "1" / "result.json").read_text())
    stages = result["stages"]
    assert list(stages) == ["augment", "generate", "filter", "split", "count"]
    assert all(s["rc"] == 0 and s["peak_rss_mib"] > 50 and s["wall_s"] > 0 for s in stages.values())
    # The sampled PSS of a stage's processes: below its peak RSS (shared library pages are split
    # with other processes), and of the same order.
    assert all(s["peak_rss_mib"] / 4 < s["peak_pss_tree_mib"] <= s["peak_rss_mib"] * 1.05 for s in stages.values())
    assert result["set"] == ["split.seed=7"]
    assert yaml.safe_load((out / "1" / "project" / "params.yaml").read_text())["split"]["seed"] == 7
    filtered = json.loads((out / "1" / "project" / "reports" / "filter.json").read_text())
    assert stages["filter"]["records"] == filtered["generated"] == 600 and stages["filter"]["kept"] == filtered["kept"]
    meta = json.loads((out / "1" / "project" / "data" / "counts" / "meta.json").read_text())
    assert stages["count"]["tokens"] == sum(meta["tokens"].values()) > 0 and stages["count"]["tokens_per_s"] > 0
    printed = capsys.readouterr().out
    assert "| filter | " in printed and "| count | " in printed and "tok/s" in printed
    bench.main(records=600, fractions="1", until="count", out=out, kill_count_after=None, seed=0, settings=[])
    assert "1: done before (result.json); not run again" in capsys.readouterr().out


@pytest.mark.parametrize("setting", ["split.sed=1", "split.seed", "nosuch.key=1", "split.test_fraction=2", "eval.ratios=0.01,0.02"])
def test_a_bad_setting_is_refused_before_any_work(tmp_path, setting):
    with pytest.raises(typer.BadParameter, match="--set"):
        _bench().main(records=600, fractions="1", until="count", out=tmp_path / "runs", kill_count_after=None, seed=0,
                      settings=[setting])
    assert not (tmp_path / "runs").exists()


def test_stage_figures_without_the_directions_pass(tmp_path):
    """-S directions.enabled=false: directions.json has no sums, so no tokens/s for that stage."""
    bench = _bench()
    (tmp_path / "reports/metrics").mkdir(parents=True)
    (tmp_path / "reports/metrics/directions.json").write_text(json.dumps({"enabled": False}))
    entries = [{"event": "end", "argv": ["stages/directions.py"], "rc": 0, "wall_s": 1.7, "peak_rss_mib": 256.1,
                "peak_pss_tree_mib": 213.8, "cpu_s": 1.8, "load_avg_1min": 2.0}]
    figures = bench.stage_figures(entries, tmp_path, 100)
    assert figures["directions"]["peak_pss_tree_mib"] == 213.8 and "tokens" not in figures["directions"]
