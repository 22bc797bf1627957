"""Coherence of replies (evaluate/coherence.py): log-likelihood per token equals the model's own
forward on each whole sequence, one at a time (tiny random models, Gemma's soft-capped logits and a
sliding window that the contexts outgrow among them); repeated n-gram shares of hand-made lists;
the text-broke rule and the per-condition summary."""

from __future__ import annotations

import math

import pytest
import torch

from emoneurons.evaluate.coherence import (
    CoherenceRule,
    chat_reply_coherence,
    coherence_summary,
    repeated_ngram_share,
    reply_logp_per_token,
    reply_words,
    text_broke,
)
from helpers.references import reference_logp_per_token
from helpers.tiny_models import build_family


def _pairs(vocab: int) -> tuple[list[list[int]], list[list[int]]]:
    gen = torch.Generator().manual_seed(1)
    contexts = [torch.randint(5, vocab, (n,), generator=gen).tolist() for n in (11, 3, 14)]
    lengths = (1, 7, 0, 4, 12, 2, 7, 5)
    replies = [torch.randint(5, vocab, (n,), generator=gen).tolist() for n in lengths]
    # Several replies per context, as steering has (each prompt answered under every condition).
    return [contexts[i % len(contexts)] for i in range(len(replies))], replies


@pytest.mark.parametrize("case", ["llama", "gemma2", "gemma3_window_8"])
def test_logp_per_token_equals_the_models_own_forward_one_sequence_at_a_time(case, tiny_llama, tiny_tokenizer):
    if case == "llama":
        lm = tiny_llama
    elif case == "gemma2":  # final logits soft-capped
        lm = build_family(tiny_tokenizer, "gemma2")
    else:  # local layers see 8 keys: contexts of 11 and 14 tokens outgrow the window
        lm = build_family(tiny_tokenizer, "gemma3_text", sliding_window=8)
    contexts, replies = _pairs(len(tiny_tokenizer))
    got = reply_logp_per_token(lm, contexts, replies, batch_size=2, pad_id=tiny_tokenizer.pad_token_id)
    assert got[2] is None  # the empty reply
    for i, (context, reply) in enumerate(zip(contexts, replies)):
        if reply:
            assert abs(got[i] - reference_logp_per_token(lm, context, reply)) < 1e-5, (case, i)
    # Batching changes nothing: one batch of all, and one reply at a time.
    assert got == pytest.approx(reply_logp_per_token(lm, contexts, replies, batch_size=8, pad_id=0), abs=1e-5)
    with pytest.raises(ValueError, match="an empty context"):
        reply_logp_per_token(lm, [[]], [[5]], batch_size=1, pad_id=0)


def test_chat_replies_are_scored_after_the_prompt_as_generation_rendered_it(tiny_llama, tiny_tokenizer):
    prompts = ["Tell me about your morning.", "What should I cook?", "Tell me about your morning."]
    replies = ["I woke up early.", "", "the the the the"]
    got = chat_reply_coherence(tiny_llama, prompts, replies, prompt_format="chat", ngram=2, batch_size=4)
    for prompt, reply, value in zip(prompts, replies, got.logp_per_token):
        if not reply:
            assert value is None
            continue
        turn = [{"role": "user", "content": prompt}]
        context = tiny_tokenizer.encode(tiny_tokenizer.apply_chat_template(turn, tokenize=False, add_generation_prompt=True),
                                        add_special_tokens=False)
        assert abs(value - reference_logp_per_token(tiny_llama, context, tiny_tokenizer.encode(reply, add_special_tokens=False))) < 1e-5
    assert got.repeated_share == [0.0, 0.0, pytest.approx(2 / 3)]


def test_repeated_ngram_share_of_hand_made_sequences():
    assert repeated_ngram_share(["a", "b", "a", "b"], 2) == pytest.approx(1 / 3)  # ab, ba, ab: one of three repeats
    assert repeated_ngram_share(["a", "b", "a", "b"], 1) == 0.5
    assert repeated_ngram_share(["a", "b", "a", "b"], 3) == 0.0  # aba, bab
    assert repeated_ngram_share([7, 7, 7, 7, 7], 2) == 0.75  # token ids work the same
    assert repeated_ngram_share(["x", "y", "z"], 2) == 0.0
    assert repeated_ngram_share(["x"], 2) == 0.0 and repeated_ngram_share([], 1) == 0.0  # no n-gram: nothing repeated
    with pytest.raises(ValueError, match="n-gram size 0"):
        repeated_ngram_share(["a"], 0)


def test_reply_words_keep_words_and_single_symbols_drop_spacing():
    assert reply_words("You look ready for a PI PI PI") == ["you", "look", "ready", "for", "a", "pi", "pi", "pi"]
    assert reply_words("I'm sorry, I'M sorry!") == ["i'm", "sorry", ",", "i'm", "sorry", "!"]
    assert reply_words("🍏🍏 🍏") == ["🍏", "🍏", "🍏"]
    assert repeated_ngram_share(reply_words("I AM IS IS IS IS"), 2) == pytest.approx(2 / 5)


def test_text_broke_when_either_measure_passes_its_margin():
    rule = dict(logp_drop=2.0, repeat_rise=0.2)
    assert not text_broke(-2.9, 0.1, -1.0, 0.0, **rule)  # 1.9 below, 0.1 above: within both margins
    assert text_broke(-3.1, 0.0, -1.0, 0.0, **rule)
    assert text_broke(-1.0, 0.25, -1.0, 0.0, **rule)
    assert not text_broke(None, 0.1, -1.0, 0.0, **rule) and text_broke(None, 0.3, -1.0, 0.0, **rule)


def test_summary_means_each_measure_and_shifts_it_from_the_unmodified_replies():
    rule = CoherenceRule(ngram=2, logp_drop=2.0, repeat_rise=0.2)
    base = coherence_summary([-1.0, -2.0], [0.0, 0.1])
    assert base["logp_per_token"] == -1.5 and base["repeated_share"] == 0.05 and "text_broke" not in base
    steered = coherence_summary([-5.0, None, -4.0], [0.5, 0.0, 0.4], base, rule)
    assert steered["logp_per_token"] == -4.5  # over the replies that have a token
    assert steered["logp_per_token_shift"] == -3.0 and steered["repeated_share_shift"] == 0.25
    assert steered["text_broke"] is True
    assert steered["replies"] == {"logp_per_token": [-5.0, None, -4.0], "repeated_share": [0.5, 0.0, 0.4]}
    empty = coherence_summary([None, None], [0.0, 0.0], base, rule)
    assert empty["logp_per_token"] is None and empty["logp_per_token_shift"] is None and empty["text_broke"] is False
    assert all(math.isfinite(v) for v in (steered["logp_per_token"], steered["repeated_share"]))
