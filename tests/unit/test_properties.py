"""Property-based tests (hypothesis) of the parsers and the selection math: the dialogue parser,
the answer (label) parser, the topic normaliser and LAPE selection's symmetries. Few examples
each, so the file stays fast; a failure prints the smallest input that breaks the property."""

from __future__ import annotations

import string

import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from emoneurons.dataset.topics import clean_topic, fold_duplicates, parse_seed_topics, topic_key
from emoneurons.emotions import EMOTIONS, parse_emotion
from emoneurons.neurons.selection import lape_quantile, neuron_entropy, select_emotion_neurons
from emoneurons.text.dialogue_format import check_reply

FAST = settings(max_examples=60, deadline=None, database=None)  # no .hypothesis/ folder in the work tree

# Words a dialogue turn may use: letters with an optional end mark; no colon, so no word is a speaker.
words = st.text(alphabet=string.ascii_letters + "'", min_size=1, max_size=8)
turn_text = st.lists(st.tuples(words, st.sampled_from(["", ",", ".", "!", "?"])), min_size=1, max_size=6).map(
    lambda pairs: " ".join(w + p for w, p in pairs)
)


@FAST
@given(st.lists(turn_text, min_size=2, max_size=8), st.sampled_from(["\n", "\n\n", "\r\n"]), st.sampled_from(["", "  "]))
def test_a_well_formed_dialogue_parses_to_itself(turns, newline, pad):
    speakers = ["A", "B"] * len(turns)
    expected = "\n".join(f"{s}: {t}" for s, t in zip(speakers, turns))
    reply = newline.join(f"{pad}{s}:  {t}{pad}" for s, t in zip(speakers, turns))
    assert check_reply(reply) == (expected, "ok")


@FAST
@given(st.lists(turn_text, min_size=2, max_size=8), st.sampled_from([("Ann", "Bob"), ("Mother", "Son"), ("Dr. Lee", "Sam")]))
def test_two_named_alternating_speakers_become_a_and_b(turns, names):
    reply = "\n".join(f"{names[i % 2]}: {t}" for i, t in enumerate(turns))
    dialogue, reason = check_reply(reply)
    assert reason == "ok"
    assert dialogue.split("\n") == [f"{'AB'[i % 2]}: {t}" for i, t in enumerate(turns)]


@FAST
@given(st.text(max_size=300) | st.lists(st.sampled_from(["A: ", "B: ", "Ann: ", "hi", ".", "\n", "**", "1. ", " "]), max_size=30).map("".join))
@example("A: hi. B: hello.")
def test_the_parser_is_idempotent_and_yields_two_alternating_speakers(text):
    dialogue, reason = check_reply(text)
    if dialogue is None:
        assert reason != "ok"
        return
    assert check_reply(dialogue) == (dialogue, "ok")
    lines = dialogue.split("\n")
    assert {line[:3] for line in lines} == {"A: ", "B: "}
    assert all(line[3:].strip() for line in lines)


@FAST
@given(st.text(max_size=200))
@example("ſadness")  # Unicode case folding: the long s matches "s" under IGNORECASE
@example("K")
def test_the_answer_parser_returns_one_of_the_six_or_none(text):
    assert parse_emotion(text) in (*EMOTIONS, None)


# Text around the label that holds no emotion word (no letters that could spell one).
marks = st.text(alphabet=" \n.,:;!?-*\"'()", max_size=20)
filler = marks | st.sampled_from(
    ["The emotion is", "Answer:", "I think it's", "**Emotion**:", "Label ->"]
)


@FAST
@given(filler, st.sampled_from(EMOTIONS), st.sampled_from([str.lower, str.upper, str.title]), marks, st.sampled_from(EMOTIONS))
def test_the_first_emotion_word_is_the_label_whatever_surrounds_it(before, emotion, case, after, later):
    assert parse_emotion(f"{before} {case(emotion)}{after} {later}") == emotion


@FAST
@given(st.text(max_size=40))
def test_topic_key_and_clean_topic_are_idempotent(topic):
    assert topic_key(topic_key(topic)) == topic_key(topic)
    assert clean_topic(clean_topic(topic)) == clean_topic(topic)


@FAST
@given(st.text(alphabet=string.ascii_letters + string.digits + " .,-_/&+'!?", max_size=30), st.sampled_from([str.lower, str.upper, str.swapcase]))
def test_topic_key_ignores_case_punctuation_and_spacing(topic, case):
    assert topic_key(case(topic)) == topic_key(topic)
    assert topic_key("  " + topic.replace(" ", "   ") + ". ") == topic_key(topic)


@FAST
@given(st.lists(st.text(max_size=15), max_size=25))
def test_folding_keeps_first_spellings_once_in_order(topics):
    folded = fold_duplicates(topics)
    keys = [topic_key(t) for t in folded]
    assert len(keys) == len(set(keys)) and all(keys)
    assert fold_duplicates(folded) == folded
    firsts = {}
    for topic in topics:
        if topic_key(topic):
            firsts.setdefault(topic_key(topic), clean_topic(topic))
    assert folded == list(firsts.values())


@FAST
@given(st.lists(st.text(max_size=15), max_size=20))
def test_seed_file_lines_come_back_clean(lines):
    parsed = parse_seed_topics("\n".join(lines))
    assert all(topic and topic == clean_topic(topic) and not topic.startswith("#") for topic in parsed)
    assert all("\n" not in topic for topic in parsed)


# Selection: small count tensors [layers, neurons, 6] and token totals T >= the largest f.
@st.composite
def counts(draw, layers=st.integers(1, 3), neurons=st.integers(2, 8)):
    shape = (draw(layers), draw(neurons), len(EMOTIONS))
    values = draw(st.lists(st.integers(0, 6), min_size=shape[0] * shape[1] * 6, max_size=shape[0] * shape[1] * 6))
    f = torch.tensor(values, dtype=torch.int64).reshape(shape)
    T = torch.tensor(draw(st.lists(st.integers(6, 40), min_size=6, max_size=6)), dtype=torch.int64)
    return f, T


rates = st.fixed_dictionaries({
    "top_rate": st.sampled_from([0.05, 0.1, 0.3, 0.6, 1.0]),
    "filter_rate": st.sampled_from([0.0, 0.5, 0.8, 0.95]),
    "activation_bar_ratio": st.sampled_from([0.0, 0.5, 0.8, 0.95]),
    "assign": st.sampled_from(["lape", "argmax"]),
})


@FAST
@given(counts(), rates, st.permutations(range(len(EMOTIONS))))
def test_permuting_emotions_permutes_the_selection(fT, options, order):
    f, T = fT
    if options["assign"] == "argmax":  # argmax ties go to the first emotion: keep them out
        P = f.double() / T.double()
        top = P.amax(-1, keepdim=True)
        assume(((P == top) & (top > 0)).sum(-1).le(1).all())
    base = select_emotion_neurons(f, T, **options)
    order = list(order)
    permuted = select_emotion_neurons(f[..., order], T[order], **options)
    for j, emotion in enumerate(EMOTIONS):
        assert permuted.neurons[emotion] == base.neurons[EMOTIONS[order[j]]]
        assert permuted.per_layer[emotion] == base.per_layer[EMOTIONS[order[j]]]
    assert (permuted.selected, permuted.entropy_threshold) == (base.selected, base.entropy_threshold)


@FAST
@given(counts(), rates, st.integers(2, 1000))
def test_scaling_f_and_t_together_changes_nothing(fT, options, factor):
    f, T = fT
    assert select_emotion_neurons(f * factor, T * factor, **options) == select_emotion_neurons(f, T, **options)


@FAST
@given(counts(), st.data(), st.sampled_from(["lape", "argmax"]))
def test_a_neuron_active_for_one_emotion_only_is_assigned_to_it_alone(fT, data, assign):
    f, T = fT
    layer = data.draw(st.integers(0, f.shape[0] - 1))
    index = data.draw(st.integers(0, f.shape[1] - 1))
    emotion = data.draw(st.integers(0, len(EMOTIONS) - 1))
    f = f.clone()
    f[layer, index] = 0
    f[layer, index, emotion] = T[emotion]  # active on every token of that emotion: the largest P
    P = f.double() / T.double()
    # A candidate (LAPE: its largest P strictly above the filter quantile), with enough places
    # for every zero-entropy candidate (ties go by (layer, index)).
    bar = lape_quantile(P, 0.9)
    assume(P[layer, index].max() > bar)
    zero_entropy = int(((neuron_entropy(P) == 0) & (P.amax(-1) > bar)).sum())
    top_rate = data.draw(st.sampled_from([0.3, 0.6, 1.0]))
    assume(round(top_rate * f.shape[0] * f.shape[1]) >= zero_entropy)
    selection = select_emotion_neurons(f, T, top_rate=top_rate, filter_rate=0.9, activation_bar_ratio=0.9, assign=assign)
    owners = [e for e in EMOTIONS if [layer, index] in selection.neurons[e]]
    assert owners == [EMOTIONS[emotion]]
