"""The lexicon judge: clear sentences, negation, abstention, stems and phrases."""

from __future__ import annotations

import pytest

from emoneurons.backends.lexicon import LEXICON, cue_counts, lexicon_label, lexicon_labels
from emoneurons.emotions import EMOTIONS


@pytest.mark.parametrize(
    ("text", "emotion"),
    [
        ("I am so angry. They lied to me and I'm furious!", "anger"),
        ("That smell is revolting. Gross, the bin is full of maggots.", "disgust"),
        ("I'm terrified of the dark. What if someone is in the house?", "fear"),
        ("What a wonderful day! I'm thrilled and so grateful.", "happiness"),
        ("I miss her so much. I cried all night at the funeral.", "sadness"),
        ("Wow, I never expected that! It came out of the blue.", "surprise"),
        ("A: How dare you take my seat?\nB: Calm down.\nA: No, this is unacceptable!", "anger"),
        ("A: I'm so lonely since he left.\nB: I'm sorry.\nA: The house feels empty.", "sadness"),
    ],
)
def test_clear_sentences(text, emotion):
    assert lexicon_label(text) == emotion


def test_negation_cancels_a_cue_within_its_clause():
    assert lexicon_label("I am not happy about this.") is None
    assert lexicon_label("I'm not afraid, but I am furious.") == "anger"
    assert lexicon_label("We never worried. Later I was terrified.") == "fear"
    assert cue_counts("Don't miss it!")["sadness"] == 0
    # Negation does not reach past a clause boundary.
    assert cue_counts("No. I'm happy.")["happiness"] == 1


def test_no_cue_or_a_tie_abstains():
    assert lexicon_label("The meeting is at noon in room four.") is None
    assert lexicon_label("") is None
    assert lexicon_label("I'm thrilled, and I'm terrified.") is None  # one cue each: a tie


def test_stems_phrases_and_counts():
    counts = cue_counts("Terrifying! Utterly terrified. My heart is pounding.")
    assert counts["fear"] == 3 and sum(counts.values()) == 3
    assert cue_counts("Stunned and astonished.")["surprise"] == 2
    assert cue_counts("The soup was rotten")["disgust"] == 1
    assert set(cue_counts("x")) == set(EMOTIONS)


def test_every_emotion_has_a_few_dozen_cues_and_batches_match_singles():
    assert all(len(LEXICON[e]) >= 30 for e in EMOTIONS)
    texts = ["I'm furious!", "Yuck, vile.", "", "Hooray!"]
    assert lexicon_labels(texts) == [lexicon_label(t) for t in texts] == ["anger", "disgust", None, "happiness"]
