"""The calibration set: the reference dialogues whose label probabilities `eval.calibrate` divides by."""

from __future__ import annotations

import random

import polars as pl

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.shots import EvalDataError, emotion_rows, scanned
from emoneurons.io.tables import ScannedTable
from emoneurons.params import EvalParams
from emoneurons.text.chat_prompt import CONTENT_FREE_DIALOGUE


def calibration_dialogues(train: pl.DataFrame | ScannedTable, eval_params: EvalParams, shots: list[tuple[str, str]], *,
                          train_name: str = "train split") -> list[str]:
    """The reference dialogues `eval.calibrate` divides by: none; the content-free dialogue; or
    `calibration_per_emotion` train dialogues per emotion, seeded, never an in-context example
    (no dialogue equal to one)."""
    if eval_params.calibrate == "none":
        return []
    if eval_params.calibrate == "content_free":
        return [CONTENT_FREE_DIALOGUE]
    table = scanned(train, train_name)
    pools = emotion_rows(table, train_name)
    used = {dialogue for dialogue, _ in shots}
    # The rows holding a shot's text (a comparison per shot, read a slice at a time).
    is_shot = pl.any_horizontal([pl.col("dialogue") == text for text in used]) if used else pl.lit(False)
    shot_rows = set(table.column(is_shot).arg_true().to_list())
    rng = random.Random(f"calibrate-{eval_params.seed}")
    chosen = []
    for emotion in EMOTIONS:
        pool = [row for row in pools[emotion] if row not in shot_rows]
        if len(pool) < eval_params.calibration_per_emotion:
            raise EvalDataError(f"{train_name}: {len(pool)} {emotion} dialogues besides the shots, "
                                f"eval.calibration_per_emotion needs {eval_params.calibration_per_emotion}; "
                                "lower it, use eval.calibrate: content_free, or generate more dialogues")
        chosen += table.values_at("dialogue", rng.sample(pool, eval_params.calibration_per_emotion))
    return chosen
