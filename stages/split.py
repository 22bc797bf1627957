"""split: stratified, seeded train/test split of data/filtered.parquet into data/split/."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import typer

from emoneurons.dataset.split import TableSplit
from emoneurons.emotions import EMOTIONS
from emoneurons.io.artifacts import FILTERED, SPLIT_CHECKS, TEST, TRAIN
from emoneurons.io.atomic import atomic_dir
from emoneurons.io.suites import check_split, checks_record
from emoneurons.params import load_stage_params
from emoneurons.runtime.stage_run import run_stage


def _summary(train: pl.DataFrame, test: pl.DataFrame) -> str:
    def sizes(part: pl.DataFrame) -> dict[str, int]:
        return dict(part.group_by("theme").len().iter_rows())

    n_train, n_test = sizes(train), sizes(test)
    per_emotion = ", ".join(f"{e} {n_train.get(e, 0)}/{n_test.get(e, 0)}" for e in EMOTIONS)
    return f"split: train {train.height}, test {test.height} (train/test per emotion: {per_emotion})"


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (section `split`)"),
    filtered: Path = typer.Option(Path(FILTERED.path), help="filtered dialogues"),
    out: Path = typer.Option(TRAIN.folder, help="folder for train.parquet and test.parquet"),
) -> None:
    settings = load_stage_params(params, ("split",)).split
    split = TableSplit(filtered, settings.test_fraction, settings.seed)  # drawn from the ids: bad input before any output
    # One folder, renamed into place whole: an interrupted run leaves no half split.
    with atomic_dir(out) as tmp:
        # The parts are written a batch at a time; the checks need only their ids and emotions.
        train, test = split.write(tmp)
        checked = check_split(train, test, settings.test_fraction, sources=(str(TRAIN.at(out)), str(TEST.at(out))))
        SPLIT_CHECKS.at(tmp).write_text(json.dumps(checks_record(checked), indent=2) + "\n")
    print(_summary(train, test))


if __name__ == "__main__":
    run_stage(main, "split")
