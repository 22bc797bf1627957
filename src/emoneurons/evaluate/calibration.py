"""The calibration set: the reference dialogues whose label probabilities `eval.calibrate` divides by."""

from __future__ import annotations

import random

import polars as pl

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.shots import EvalDataError, split_labels
from emoneurons.params import EvalParams
from emoneurons.text.chat_prompt import CONTENT_FREE_DIALOGUE


def calibration_dialogues(train: pl.DataFrame, eval_params: EvalParams, shots: list[tuple[str, str]], *,
                          train_name: str = "train split") -> list[str]:
    """The reference dialogues `eval.calibrate` divides by: none; the content-free dialogue; or
    `calibration_per_emotion` train dialogues per emotion, seeded, never an in-context example."""
    if eval_params.calibrate == "none":
        return []
    if eval_params.calibrate == "content_free":
        return [CONTENT_FREE_DIALOGUE]
    labels = split_labels(train, train_name)
    dialogues = train["dialogue"].to_list()
    used = {dialogue for dialogue, _ in shots}
    rng = random.Random(f"calibrate-{eval_params.seed}")
    chosen = []
    for emotion in EMOTIONS:
        pool = [d for d, label in zip(dialogues, labels) if label == emotion and d not in used]
        if len(pool) < eval_params.calibration_per_emotion:
            raise EvalDataError(f"{train_name}: {len(pool)} {emotion} dialogues besides the shots, "
                                f"eval.calibration_per_emotion needs {eval_params.calibration_per_emotion}; "
                                "lower it, use eval.calibrate: content_free, or generate more dialogues")
        chosen += rng.sample(pool, eval_params.calibration_per_emotion)
    return chosen
