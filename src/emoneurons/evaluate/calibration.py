"""The calibration set: the reference dialogues whose label probabilities `eval.calibrate` divides by."""

from __future__ import annotations

import random

import polars as pl

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.shots import EvalDataError, TrainSplit, dialogues_at, label_rows, train_column
from emoneurons.params import EvalParams
from emoneurons.text.chat_prompt import CONTENT_FREE_DIALOGUE


def calibration_dialogues(train: TrainSplit, eval_params: EvalParams, shots: list[tuple[str, str]], *,
                          train_name: str = "train split") -> list[str]:
    """The reference dialogues `eval.calibrate` divides by: none; the content-free dialogue; or
    `calibration_per_emotion` train dialogues per emotion, seeded, never an in-context example
    (no dialogue equal to one). `train`: the split in memory or its parquet file (shots.py)."""
    if eval_params.calibrate == "none":
        return []
    if eval_params.calibrate == "content_free":
        return [CONTENT_FREE_DIALOGUE]
    pools = label_rows(train, train_name)
    used = {dialogue for dialogue, _ in shots}
    # The rows holding a shot's text: one comparison per shot, a batch at a time.
    shot_rows: set[int] = set()
    if used:
        is_shot = pl.any_horizontal([pl.col("dialogue") == text for text in used])
        shot_rows = set(train_column(train, "dialogue", is_shot).arg_true().to_list())
    rng = random.Random(f"calibrate-{eval_params.seed}")
    chosen = []
    for emotion in EMOTIONS:
        pool = [row for row in pools[emotion] if row not in shot_rows]
        if len(pool) < eval_params.calibration_per_emotion:
            raise EvalDataError(f"{train_name}: {len(pool)} {emotion} dialogues besides the shots, "
                                f"eval.calibration_per_emotion needs {eval_params.calibration_per_emotion}; "
                                "lower it, use eval.calibrate: content_free, or generate more dialogues")
        chosen += dialogues_at(train, rng.sample(pool, eval_params.calibration_per_emotion))
    return chosen
