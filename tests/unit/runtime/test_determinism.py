"""Determinism below the pipeline test (tests/pipeline/test_pipeline_queue.py compares two whole runs):
what a rerun writes must not change when nothing it depends on changed."""

from __future__ import annotations

from pathlib import Path

from helpers.stage_runner import run_stage_script


def test_a_figure_saved_twice_is_byte_identical(tmp_path):
    """matplotlib salts SVG element ids with a random uuid unless told otherwise (the second
    dvc repro from scratch once differed in reports/figures only)."""
    from emoneurons.report.figures.drawing import new_figure
    from emoneurons.report.style import save_figure

    def draw(folder: Path) -> list[bytes]:
        figure = new_figure(3, 2)
        axes = figure.add_subplot()
        axes.bar([1, 2], [3, 4], hatch="//")
        axes.plot([1, 2], [2, 1], clip_on=True)
        return [path.read_bytes() for path in save_figure(figure, folder, "figure")]

    assert draw(tmp_path / "a") == draw(tmp_path / "b")


def test_threads_are_pinned_from_the_environment_or_torchs_start_up_choice(monkeypatch):
    """Float results depend on torch's intra-op thread count (how a matmul's work is split), so a
    stage sets it once, explicitly, and a bad EMONEURONS_THREADS is one line."""
    import pytest
    import torch

    from emoneurons.params import ParamsError
    from emoneurons.runtime.compute import compute_record, pin_threads

    before = torch.get_num_threads()
    try:
        assert pin_threads({"EMONEURONS_THREADS": "3"}) == 3 == torch.get_num_threads()
        assert pin_threads({}) == 3  # unset: the count in force is kept, set explicitly
        record = compute_record("cpu")
        assert record["threads"] == 3 and record["device"] == "cpu" and record["torch"] == torch.__version__
        for bad in ("0", "two", "-1"):
            with pytest.raises(ParamsError, match=rf"^EMONEURONS_THREADS: '{bad}' \(allowed: a whole number >= 1"):
                pin_threads({"EMONEURONS_THREADS": bad})
    finally:
        torch.set_num_threads(before)


def test_count_records_the_threads_it_ran_with(tmp_path, tiny_llama):
    import json
    import os
    import subprocess

    import polars as pl

    from emoneurons.emotions import EMOTIONS
    from helpers.repo_params import params_yaml

    tiny_llama.model.save_pretrained(tmp_path / "tiny")
    tiny_llama.tokenizer.save_pretrained(tmp_path / "tiny")
    (tmp_path / "data" / "split").mkdir(parents=True)
    pl.DataFrame({"theme": list(EMOTIONS), "dialogue": [f"A: {e}." for e in EMOTIONS]}).write_parquet(tmp_path / "data/split/train.parquet")
    (tmp_path / "params.yaml").write_text(params_yaml({"model": {"id": str(tmp_path / "tiny")}}))

    def count(threads: str) -> subprocess.CompletedProcess:
        return run_stage_script("count", "--checkpoints", tmp_path / "ck", cwd=tmp_path, env={**os.environ, "EMONEURONS_THREADS": threads})

    bad = count("lots")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "EMONEURONS_THREADS: 'lots' (allowed: a whole number >= 1, or unset for torch's own choice)"]
    assert not (tmp_path / "data" / "counts").exists()
    done = count("2")
    assert done.returncode == 0, done.stderr
    compute = json.loads((tmp_path / "data/counts/meta.json").read_text())["compute"]
    assert compute["threads"] == 2 and compute["device"] == "cpu" and compute["cpu_capability"] and compute["cpu"]
