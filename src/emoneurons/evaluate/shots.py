"""What mask-eval and steering take from the split tables: their labels (checked), the in-context
shots drawn from train, the test labels."""

from __future__ import annotations

import random
from typing import get_args

import polars as pl

from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.errors import EmoneuronsError
from emoneurons.io.tables import label_column
from emoneurons.params import ShotSelection, allowed_values


class EvalDataError(EmoneuronsError, ValueError):
    """The split cannot be evaluated (empty, an emotion missing, too few shots), in one line."""


def split_labels(df: pl.DataFrame, name: str) -> list[str]:
    column = label_column(df)
    if column not in df.columns or "dialogue" not in df.columns:
        raise EvalDataError(f"{name}: needs columns `dialogue` and `label` (has: {', '.join(df.columns)})")
    return df[column].to_list()


def draw_shots(train: pl.DataFrame, shots: int, seed: int, selection: str = "random", *,
               train_name: str = "train split") -> list[tuple[str, str]]:
    """`shots` (dialogue, emotion) examples per emotion from the train split (random: a seeded
    draw; shortest: the shortest by characters, ties by row order), in a seeded shuffled order (so
    the last example, nearest the question, is not always the same emotion). `train_name` names
    the table in errors (the stage passes its path)."""
    if selection not in get_args(ShotSelection):
        raise ValueError(f"shot_selection {selection!r}: allowed: {allowed_values(ShotSelection)}")
    if shots == 0:
        return []
    labels = split_labels(train, train_name)
    dialogues = train["dialogue"].to_list()
    rng = random.Random(seed)
    chosen = []
    for emotion in EMOTIONS:
        pool = [i for i, label in enumerate(labels) if label == emotion]
        if len(pool) < shots:
            raise EvalDataError(f"{train_name}: {len(pool)} {emotion} dialogues, eval.shots needs {shots}; "
                                "lower eval.shots or generate more dialogues")
        picked = sorted(pool, key=lambda i: (len(dialogues[i]), i))[:shots] if selection == "shortest" else rng.sample(pool, shots)
        chosen += [(dialogues[i], emotion) for i in picked]
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
