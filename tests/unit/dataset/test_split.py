"""Stratified split and the split stage run as a script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import polars as pl
import pytest

from emoneurons.dataset.split import TableSplit, held_out_count, stratified_split
from emoneurons.emotions import EMOTIONS
from emoneurons.io.tables import DataError, read_table, write_table
from helpers.repo_params import params_yaml
from helpers.stage_runner import REPO, run_stage_script

# Unequal sizes per emotion so stratification is visible: anger 10, disgust 11, ... surprise 35.
SIZES = {emotion: 10 + 5 * i for i, emotion in enumerate(EMOTIONS)}
SIZES["disgust"] = 11


def _filtered(sizes: dict[str, int] = SIZES) -> pl.DataFrame:
    rows = [
        {
            "id": f"{emotion}-{k:03d}",
            "topic": f"topic {k}",
            "theme": emotion,
            "dialogue": f"A: This is about {emotion}.\nB: Indeed, topic {k}.",
            "backend": "template",
            "model": "none",
            "judge_lexicon": emotion,
            "n_agree": 2,
            "label": emotion,
        }
        for emotion, n in sizes.items()
        for k in range(n)
    ]
    return pl.DataFrame(rows)


def _per_emotion(df: pl.DataFrame) -> dict[str, int]:
    return dict(df.group_by("theme").len().iter_rows())


def test_held_out_count_rounds_and_keeps_one_on_each_side():
    assert held_out_count(20, 0.2) == 4
    assert held_out_count(11, 0.2) == 2  # 2.2
    assert held_out_count(13, 0.2) == 3  # 2.6
    assert held_out_count(10, 0.01) == 1  # at least one in test
    assert held_out_count(3, 0.9) == 2  # at least one in train
    assert held_out_count(2, 0.5) == 1


def test_split_is_stratified_disjoint_and_complete():
    df = _filtered()
    train, test = stratified_split(df, 0.2, seed=0)
    assert _per_emotion(test) == {e: round(n * 0.2) for e, n in SIZES.items()}
    assert _per_emotion(train) == {e: n - round(n * 0.2) for e, n in SIZES.items()}
    assert set(train["id"]).isdisjoint(test["id"])
    assert sorted(train["id"].to_list() + test["id"].to_list()) == sorted(df["id"].to_list())
    assert train.columns == df.columns and train.schema == df.schema
    assert train["id"].is_sorted() and test["id"].is_sorted()
    # Rows travel whole: each output row equals its input row.
    assert test.join(df, on=df.columns, how="anti").height == 0


def test_split_is_deterministic_per_seed_and_ignores_row_order():
    df = _filtered()
    train, test = stratified_split(df, 0.2, seed=7)
    again_train, again_test = stratified_split(df.sample(fraction=1.0, shuffle=True, seed=3), 0.2, seed=7)
    assert again_test.equals(test) and again_train.equals(train)


def test_split_changes_with_the_seed():
    tests = {tuple(stratified_split(_filtered(), 0.2, seed=s)[1]["id"]) for s in range(4)}
    assert len(tests) == 4


def test_split_draws_every_row_sometimes():
    # Over many seeds each dialogue of an emotion lands in test: the shuffle is not a fixed prefix.
    seen: set[str] = set()
    for seed in range(60):
        seen |= set(stratified_split(_filtered(), 0.2, seed=seed)[1]["id"])
    assert seen == set(_filtered()["id"])


def test_written_in_buckets_the_split_is_the_same_tables(tmp_path):
    """TableSplit reads the table a few rows at a time and sorts through id-range buckets on disk:
    the parts are the same tables stratified_split makes of the whole table, and no bucket is left."""
    df = _filtered().sample(fraction=1.0, shuffle=True, seed=5)  # not in id order
    write_table(df, tmp_path / "filtered.parquet")
    (tmp_path / "out").mkdir()
    split = TableSplit(tmp_path / "filtered.parquet", 0.2, seed=1, rows=7)
    train_keys, test_keys = split.write(tmp_path / "out")
    train, test = stratified_split(df, 0.2, seed=1)
    assert read_table(tmp_path / "out" / "train.parquet").equals(train)
    assert read_table(tmp_path / "out" / "test.parquet").equals(test)
    assert train_keys.equals(train.select("id", "theme")) and test_keys.equals(test.select("id", "theme"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["test.parquet", "train.parquet"]


def test_split_rejects_an_emotion_with_one_dialogue():
    with pytest.raises(DataError) as error:
        stratified_split(_filtered({**SIZES, "fear": 1}), 0.2, seed=0)
    assert "'fear' has 1 dialogue(s); at least 2" in str(error.value)


def test_split_rejects_missing_columns():
    with pytest.raises(DataError) as error:
        stratified_split(_filtered().drop("theme"), 0.2, seed=0)
    assert "theme" in str(error.value)


# the stage as a script


def _run_stage(workdir: Path, test_fraction: float | str) -> subprocess.CompletedProcess:
    (workdir / "params.yaml").write_text(params_yaml({"split": {"test_fraction": test_fraction, "seed": 3}}))
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO / "src")}
    return run_stage_script("split", cwd=workdir, env=env, timeout=600)


def test_stage_writes_both_parts(tmp_path):
    df = _filtered()
    write_table(df, tmp_path / "data" / "filtered.parquet")
    result = _run_stage(tmp_path, 0.2)
    assert result.returncode == 0, result.stderr
    train = read_table(tmp_path / "data" / "split" / "train.parquet")
    test = read_table(tmp_path / "data" / "split" / "test.parquet")
    expected_train, expected_test = stratified_split(df, 0.2, seed=3)
    assert train.equals(expected_train) and test.equals(expected_test)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["filtered.parquet", "split"]
    assert sorted(p.name for p in (tmp_path / "data" / "split").iterdir()) == ["checks.json", "test.parquet", "train.parquet"]
    summary = result.stdout.strip()
    assert len(summary.splitlines()) == 1
    assert f"train {train.height}, test {test.height}" in summary and "anger 8/2" in summary


def test_stage_bad_param_prints_one_line_and_writes_nothing(tmp_path):
    write_table(_filtered(), tmp_path / "data" / "filtered.parquet")
    result = _run_stage(tmp_path, 1.5)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "split.test_fraction" in lines[0], result.stderr
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["filtered.parquet"]


def test_stage_missing_input_names_the_file(tmp_path):
    result = _run_stage(tmp_path, 0.2)
    assert result.returncode == 1
    assert result.stderr.strip() == "data/filtered.parquet: file not found"
    assert not (tmp_path / "data").exists()
