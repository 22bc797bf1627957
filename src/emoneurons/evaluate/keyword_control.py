"""The keyword control (eval.keyword_control): are emotion neurons emotion neurons or emotion-WORD
neurons? Every condition of the plan runs twice, on the test dialogues as they are and on the same
dialogues with every NRC emotion cue word replaced by a neutral word (text/cue_removal.py); the shots
and the calibration stay as they are, so the decision rule is the same on both versions.

Per emotion, on each version: the unmodified accuracy, and the RQ2 mask (the emotion's neurons at
select.top_rate, all layers) against its random controls of the verdict's null kind (the first of
eval.controls) by the existing corrected test
(effects.specificity: one-sided sign-flip test, Holm across that version's masked conditions).
The verdict (KEYWORD_RULE) combines the two versions' verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.conditions import control_id, mask_id
from emoneurons.io.eval_file import VS_KEY
from emoneurons.params import ControlKind
from emoneurons.stats.effects import NOT_DISTINGUISHABLE, NOT_ENOUGH_DATA, SPECIFIC

SURVIVES = "survives without emotion words"
ONLY_WITH_WORDS = "only with emotion words"
NEITHER = "not specific with emotion words either"
KEYWORD_RULE = (
    "Per emotion, the RQ2 mask (its neurons at select.top_rate, all layers) is tested against its random controls "
    "on both versions of the test dialogues by the same corrected test (sign-flip, Holm across that version's masked "
    f"conditions). {SURVIVES}: '{SPECIFIC}' without the cue words; {NOT_ENOUGH_DATA}: the test without the cue words "
    f"cannot pass (or, when it is '{NOT_DISTINGUISHABLE}', the test with them could not either); {ONLY_WITH_WORDS}: "
    f"'{SPECIFIC}' with the cue words and '{NOT_DISTINGUISHABLE}' without; {NEITHER}: '{NOT_DISTINGUISHABLE}' on both."
)


def keyword_verdict(with_words: str, without_words: str) -> str:
    """KEYWORD_RULE's outcome from the two versions' specificity verdicts."""
    if without_words == SPECIFIC:
        return SURVIVES
    if without_words == NOT_ENOUGH_DATA:
        return NOT_ENOUGH_DATA
    if with_words == SPECIFIC:
        return ONLY_WITH_WORDS
    return NOT_ENOUGH_DATA if with_words == NOT_ENOUGH_DATA else NEITHER


def _side(conditions: dict[str, dict], emotion: str, top_rate: float, control_draws: int, null: ControlKind) -> dict:
    """One version's numbers for one emotion: unmodified accuracy with its 95% CI, the RQ2 mask's
    and its controls' (of kind `null`) accuracy and mean effect, the paired difference, Holm p and verdict."""
    base = conditions["unmodified"]
    cid = mask_id(emotion, top_rate, "all")
    mask = conditions[cid]
    vs = mask.get(VS_KEY[null], {})
    controls = [conditions[control_id(cid, d, null)]["accuracy"][emotion] for d in range(control_draws)]
    return {
        "accuracy_unmodified": base["accuracy"][emotion], "ci95_unmodified": base["ci95"][emotion],
        "accuracy_masked": mask["accuracy"][emotion],
        "accuracy_control": round(sum(controls) / len(controls), 4) if controls else None,
        "mask_effect": vs.get("mask_mean"), "control_effect": vs.get("control_mean"),
        "difference": vs.get("difference"), "difference_ci95": vs.get("difference_ci95", [None, None]),
        "p_holm": vs.get("p_holm"), "verdict": vs.get("verdict", NOT_ENOUGH_DATA),
    }


def keyword_control_record(with_words: Sequence[dict], without_words: Sequence[dict], top_rate: float, control_draws: int,
                           removal: dict, null: ControlKind = "uniform") -> dict:
    """eval.json's `keyword_control`: what cue removal took (`removal`), both versions' overall
    unmodified accuracy, per emotion both versions' numbers (`_side`) and the verdict, and every
    masked condition's verdict without the cue words; the verdicts are against controls of kind
    `null` (the first of eval.controls). `with_words` / `without_words`: the
    conditions as eval.json lists them, for the dialogues as they are / with cue words replaced."""
    kept = {c["id"]: c for c in with_words}
    cue_free = {c["id"]: c for c in without_words}
    emotions = {}
    for emotion in EMOTIONS:
        sides = {"with_words": _side(kept, emotion, top_rate, control_draws, null),
                 "without_words": _side(cue_free, emotion, top_rate, control_draws, null)}
        emotions[emotion] = sides | {"verdict": keyword_verdict(sides["with_words"]["verdict"], sides["without_words"]["verdict"])}
    return {
        "lexicon": "NRC Emotion Lexicon (Mohammad & Turney 2013), nrclex's nrc_en.json: anger, disgust, fear, joy, sadness, surprise",
        "removal": removal,
        "rule": KEYWORD_RULE,
        "null": null,
        "accuracy_unmodified": {"with_words": kept["unmodified"]["accuracy"]["overall"],
                                "without_words": cue_free["unmodified"]["accuracy"]["overall"]},
        "ci95_unmodified": {"with_words": kept["unmodified"]["ci95"]["overall"],
                            "without_words": cue_free["unmodified"]["ci95"]["overall"]},
        "emotions": emotions,
        "conditions_without_words": [
            {"id": c["id"], "accuracy": c["accuracy"]["overall"],
             **({"verdict": c[VS_KEY[null]]["verdict"], "p_holm": c[VS_KEY[null]]["p_holm"]} if VS_KEY[null] in c else {})}
            for c in without_words
        ],
    }
