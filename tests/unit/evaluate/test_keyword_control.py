"""The keyword control (eval.keyword_control): every condition again on the test dialogues with
their NRC cue words replaced, and the per-emotion verdict."""

from __future__ import annotations

from types import SimpleNamespace

import polars as pl
import pytest

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.keyword_control import NEITHER, ONLY_WITH_WORDS, SURVIVES, keyword_verdict
from emoneurons.evaluate.masking_eval import evaluate_masking
from emoneurons.io.eval_file import parse_eval
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.report.document.markdown import render_markdown
from emoneurons.report.document.sections.keywords import keyword_section
from emoneurons.stats.effects import NOT_DISTINGUISHABLE, NOT_ENOUGH_DATA, SPECIFIC
from emoneurons.text.cue_removal import PLACEHOLDER, replace_cues
from emoneurons.text.nrc_lexicon import cue_words
from helpers.repo_params import section
from helpers.synthetic_inputs import synthetic_neurons, synthetic_p_active, synthetic_split


@pytest.mark.parametrize(("with_words", "without_words", "expected"), [
    (SPECIFIC, SPECIFIC, SURVIVES),
    (NOT_DISTINGUISHABLE, SPECIFIC, SURVIVES),  # specific without the words is what counts
    (SPECIFIC, NOT_DISTINGUISHABLE, ONLY_WITH_WORDS),
    (SPECIFIC, NOT_ENOUGH_DATA, NOT_ENOUGH_DATA),
    (NOT_DISTINGUISHABLE, NOT_DISTINGUISHABLE, NEITHER),
    (NOT_ENOUGH_DATA, NOT_DISTINGUISHABLE, NOT_ENOUGH_DATA),
])
def test_keyword_verdict(with_words, without_words, expected):
    assert keyword_verdict(with_words, without_words) == expected


def test_the_cue_free_side_is_mask_eval_on_the_cue_free_dialogues(tiny_llama, one_thread):
    n_layers, per_layer = len(tiny_llama.model.model.layers), tiny_llama.model.config.intermediate_size
    neurons = synthetic_neurons(ratios=(0.04,), layers=n_layers, per_layer=per_layer)
    params = section("eval", ratios=(0.04,), layer_ranges=("all",), control_draws=1, bootstrap=50, null_draws=0,
                     controls=("matched", "uniform"))
    p_active = synthetic_p_active(n_layers, per_layer)
    train, test = synthetic_split(3), synthetic_split(2, offset=10)
    # one test dialogue of cue words only: kept (and counted), never dropped
    test = test.with_columns(pl.when(pl.col("id") == "anger-10").then(pl.lit("Furious! Angry!")).otherwise(pl.col("dialogue")).alias("dialogue"))
    evaluation, _, _ = evaluate_masking(tiny_llama, train, test, parse_neurons(neurons), params.model_copy(update={"keyword_control": True}),
                                     0.04, batch_size=4, progress=False, workers=1, p_active=p_active, max_length=None, prompt_format="chat")
    record = evaluation["keyword_control"]
    assert record["null"] == "matched"
    cues = cue_words()
    cue_free = test.with_columns(pl.Series("dialogue", [replace_cues(d, cues)[0] for d in test["dialogue"]]))
    assert cue_free["dialogue"][0] == f"{PLACEHOLDER}! {PLACEHOLDER}!"
    reference, _, _ = evaluate_masking(tiny_llama, train, cue_free, parse_neurons(neurons), params, 0.04, batch_size=4, progress=False, workers=1,
                                    p_active=p_active, max_length=None, prompt_format="chat")
    ref = {c["id"]: c for c in reference["conditions"]}
    own = {c["id"]: c for c in evaluation["conditions"]}
    removal = record["removal"]
    assert removal["dialogues"] == evaluation["n_test"] == 12 and removal["no_other_word"] == 1
    assert removal["with_cues"] == sum(replace_cues(d, cues)[1] > 0 for d in test["dialogue"])
    assert removal["with_cues"] >= 4  # furious, revolting, scared, wonderful are NRC cue words
    assert sum(removal["tokens_lost"]["per_dialogue"]) >= removal["cue_words"] > 0
    assert record["accuracy_unmodified"] == {"with_words": own["unmodified"]["accuracy"]["overall"],
                                             "without_words": ref["unmodified"]["accuracy"]["overall"]}
    for emotion in EMOTIONS:
        cid = f"mask-{emotion}-r0.04-all"
        for side, table in (("with_words", own), ("without_words", ref)):
            got = record["emotions"][emotion][side]
            assert got["accuracy_unmodified"] == table["unmodified"]["accuracy"][emotion]
            assert got["accuracy_masked"] == table[cid]["accuracy"][emotion]
            # against the verdict's null: matched controls, the first of eval.controls
            assert got["mask_effect"] == table[cid]["vs_matched"]["mask_mean"]
            assert got["control_effect"] == table[cid]["vs_matched"]["control_mean"]
            assert (got["p_holm"], got["verdict"]) == (table[cid]["vs_matched"]["p_holm"], table[cid]["vs_matched"]["verdict"])
            assert got["accuracy_control"] == table[f"matched-{emotion}-r0.04-all-d0"]["accuracy"][emotion]
        sides = record["emotions"][emotion]
        assert sides["verdict"] == keyword_verdict(sides["with_words"]["verdict"], sides["without_words"]["verdict"])
    # the two versions really differ: the first mask's per-dialogue effects move
    assert [c["effect"]["delta_true"]["per_dialogue"] for c in reference["conditions"][1:2]] != \
           [c["effect"]["delta_true"]["per_dialogue"] for c in evaluation["conditions"][1:2]]
    # report.md's section: one row per emotion with its verdict; absent when the control did not run
    markdown = render_markdown(keyword_section(SimpleNamespace(eval=parse_eval(evaluation))))
    assert markdown.startswith("## Emotion neurons vs emotion words")
    for emotion in EMOTIONS:
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {emotion} |"))
        assert row.endswith(f"**{record['emotions'][emotion]['verdict']}** |")
        assert f"{record['emotions'][emotion]['without_words']['accuracy_unmodified']:.3f}" in row
    assert keyword_section(SimpleNamespace(eval=parse_eval(reference))) == []
