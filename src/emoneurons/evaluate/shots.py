"""What mask-eval and steering take from the split tables: their labels (checked), the in-context
shots drawn from train, the test labels.

The train split is a DataFrame (tests, small runs) or the path of its parquet file, which is read
a batch of rows at a time (io.tables.table_batches): at EmoPrism's volume it is 273k dialogues, of
which the classifier needs a few shots and calibration rows. A pass over it holds its label column
(a few MB), one batch of dialogues, and the few rows picked."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import polars as pl

from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.errors import EmoneuronsError
from emoneurons.io.tables import label_column, rows_at, table_batches, table_columns
from emoneurons.params import ShotSelection, allowed_values

TrainSplit = pl.DataFrame | Path  # in memory, or a parquet file read a batch at a time


class EvalDataError(EmoneuronsError, ValueError):
    """The split cannot be evaluated (empty, an emotion missing, too few shots), in one line."""


def _checked_column(columns: Sequence[str], name: str) -> str:
    """The label column among `columns`; EvalDataError when it or `dialogue` is missing."""
    column = label_column(columns)
    if column not in columns or "dialogue" not in columns:
        raise EvalDataError(f"{name}: needs columns `dialogue` and `label` (has: {', '.join(columns)})")
    return column


def split_labels(df: pl.DataFrame, name: str) -> list[str]:
    return df[_checked_column(df.columns, name)].to_list()


def train_column(train: TrainSplit, column: str, expression: pl.Expr | None = None) -> pl.Series:
    """One column of every train row (or `expression` of it), read and computed a batch at a time."""
    expression = pl.col(column) if expression is None else expression
    if isinstance(train, pl.DataFrame):
        return train.select(expression).to_series()
    parts = [batch.select(expression).to_series() for batch in table_batches(train, columns=[column])]
    return pl.concat(parts) if parts else pl.Series(column, [])


def label_rows(train: TrainSplit, name: str) -> dict[str, list[int]]:
    """Per emotion, the row indices of its train dialogues (in row order), from the label column alone."""
    columns = train.columns if isinstance(train, pl.DataFrame) else table_columns(train)
    labels = train_column(train, _checked_column(columns, name))
    return {emotion: (labels == emotion).arg_true().to_list() for emotion in EMOTIONS}


def dialogues_at(train: TrainSplit, rows: Sequence[int]) -> list[str]:
    """The train dialogues at row indices `rows`, in that order (one pass, holding only those)."""
    if isinstance(train, pl.DataFrame):
        return [train["dialogue"][row] for row in rows]
    return rows_at(train, rows, ["dialogue"])["dialogue"].to_list()


def draw_shots(train: TrainSplit, shots: int, seed: int, selection: str = "random", *,
               train_name: str = "train split") -> list[tuple[str, str]]:
    """`shots` (dialogue, emotion) examples per emotion from the train split (random: a seeded
    draw; shortest: the shortest by characters, ties by row order), in a seeded shuffled order (so
    the last example, nearest the question, is not always the same emotion). `train_name` names
    the table in errors (the stage passes its path)."""
    if selection not in get_args(ShotSelection):
        raise ValueError(f"shot_selection {selection!r}: allowed: {allowed_values(ShotSelection)}")
    if shots == 0:
        return []
    pools = label_rows(train, train_name)
    # Characters per dialogue (polars counts code points, as len() does), only to find the shortest.
    lengths = train_column(train, "dialogue", pl.col("dialogue").str.len_chars()).to_list() if selection == "shortest" else []
    rng = random.Random(seed)
    picked: list[tuple[int, str]] = []
    for emotion in EMOTIONS:
        pool = pools[emotion]
        if len(pool) < shots:
            raise EvalDataError(f"{train_name}: {len(pool)} {emotion} dialogues, eval.shots needs {shots}; "
                                "lower eval.shots or generate more dialogues")
        rows = sorted(pool, key=lambda i: (lengths[i], i))[:shots] if selection == "shortest" else rng.sample(pool, shots)
        picked += [(row, emotion) for row in rows]
    chosen = list(zip(dialogues_at(train, [row for row, _ in picked]), [emotion for _, emotion in picked]))
    rng.shuffle(chosen)
    return chosen


def test_labels(test_df: pl.DataFrame, test_name: str) -> list[str]:
    """The test table's labels, checked: some rows, every emotion present, no unknown label."""
    if test_df.height == 0:
        raise EvalDataError(f"{test_name}: no dialogues to evaluate")
    labels = split_labels(test_df, test_name)
    missing = [e for e in EMOTIONS if e not in labels]
    if missing:
        raise EvalDataError(f"{test_name}: no {', '.join(missing)} dialogues; every emotion needs at least one")
    unknown = sorted({label for label in labels if label not in EMOTION_INDEX})
    if unknown:
        raise EvalDataError(f"{test_name}: unknown label {unknown[0]!r}; allowed: {', '.join(EMOTIONS)}")
    return labels
