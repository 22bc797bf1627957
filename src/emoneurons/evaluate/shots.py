"""What mask-eval and steering take from the split tables: their labels (checked), the in-context
shots drawn from train, the test labels.

The train split is read a column or a few rows at a time (io.tables.ScannedTable): at EmoPrism's
volume it is 273k dialogues, of which the classifier needs a few shots and calibration rows."""

from __future__ import annotations

import random
from typing import get_args

import polars as pl

from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.io.tables import ScannedTable, label_column
from emoneurons.params import ShotSelection, allowed_values


class EvalDataError(ValueError):
    """The split cannot be evaluated (empty, an emotion missing, too few shots), in one line."""


def _checked_column(table: pl.DataFrame | ScannedTable, name: str) -> str:
    """The table's label column; EvalDataError when it or `dialogue` is missing."""
    column = label_column(table)
    if column not in table.columns or "dialogue" not in table.columns:
        raise EvalDataError(f"{name}: needs columns `dialogue` and `label` (has: {', '.join(table.columns)})")
    return column


def split_labels(df: pl.DataFrame, name: str) -> list[str]:
    return df[_checked_column(df, name)].to_list()


def scanned(train: pl.DataFrame | ScannedTable, name: str) -> ScannedTable:
    """The train split as a ScannedTable (a DataFrame, as tests pass, is wrapped)."""
    return train if isinstance(train, ScannedTable) else ScannedTable(train, name)


def emotion_rows(train: ScannedTable, name: str) -> dict[str, list[int]]:
    """Per emotion, the row indices of its train dialogues (in row order), from the label column alone."""
    labels = train.column(_checked_column(train, name))
    return {emotion: (labels == emotion).arg_true().to_list() for emotion in EMOTIONS}


def draw_shots(train: pl.DataFrame | ScannedTable, shots: int, seed: int, selection: str = "random", *,
               train_name: str = "train split") -> list[tuple[str, str]]:
    """`shots` (dialogue, emotion) examples per emotion from the train split (random: a seeded
    draw; shortest: the shortest by characters, ties by row order), in a seeded shuffled order (so
    the last example, nearest the question, is not always the same emotion). `train_name` names
    the table in errors (the stage passes its path)."""
    if selection not in get_args(ShotSelection):
        raise ValueError(f"shot_selection {selection!r}: allowed: {allowed_values(ShotSelection)}")
    if shots == 0:
        return []
    table = scanned(train, train_name)
    pools = emotion_rows(table, train_name)
    # Characters per dialogue (polars counts code points, as len() does), only to find the shortest.
    lengths = table.column(pl.col("dialogue").str.len_chars()).to_list() if selection == "shortest" else []
    rng = random.Random(seed)
    chosen = []
    for emotion in EMOTIONS:
        pool = pools[emotion]
        if len(pool) < shots:
            raise EvalDataError(f"{train_name}: {len(pool)} {emotion} dialogues, eval.shots needs {shots}; "
                                "lower eval.shots or generate more dialogues")
        picked = sorted(pool, key=lambda i: (lengths[i], i))[:shots] if selection == "shortest" else rng.sample(pool, shots)
        chosen += [(dialogue, emotion) for dialogue in table.values_at("dialogue", picked)]
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
