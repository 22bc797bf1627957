"""The classification engine against brute-force full forwards of the model itself."""

from __future__ import annotations

import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.classify import MaskedClassifier, classify
from emoneurons.evaluate.layer_runner import additive_mask, run_layers
from emoneurons.model.batching import real_token_index
from emoneurons.neurons import reference
from emoneurons.neurons.masking import mask_neurons
from emoneurons.text.chat_prompt import dialogue_ids, label_ids
from emoneurons.text.classification_prompt import classification_prompt
from helpers.tiny_models import biased_copy

DIALOGUES = [
    "A: I can't believe this happened!\nB: Oh no, that is terrible.",
    "A: What a wonderful day.",
    "A: That smell is revolting.\nB: I'm scared of the dark.\nA: I miss her so much.\nB: Oh no.",
    "A: I miss her so much.\nB: What a wonderful day.\nA: That is terrible.",
    "A: Oh no!",
]
SHOTS = [("A: What a wonderful day.\nB: I can't believe it.", "happiness"), ("A: That smell is revolting.", "disgust")]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prompt(tiny_llama):
    return classification_prompt(tiny_llama.tokenizer, SHOTS, prompt_format="chat")


def brute_force_scores(lm, prompt, dialogues) -> torch.Tensor:
    """Each label's summed log-likelihood from one uncached full forward per (dialogue, label) (neurons/reference.py)."""
    contexts = [prompt.ids(dialogue_ids(lm.tokenizer, d)) for d in dialogues]
    return reference.predict(lm.model, contexts, label_ids(lm.tokenizer, "bare"))[0]


def test_labels_of_tiny_tokenizer_include_multi_token_ones(tiny_llama):
    lengths = [len(ids) for ids in label_ids(tiny_llama.tokenizer, "bare")]
    assert min(lengths) == 1 and max(lengths) > 2  # both paths of the scorer are exercised


def test_score_equals_brute_force_per_label_forwards(tiny_llama, prompt):
    result = classify(tiny_llama, prompt, DIALOGUES, "score", batch_size=2, max_new_tokens=8, label_format="bare")
    expected = brute_force_scores(tiny_llama, prompt, DIALOGUES)
    torch.testing.assert_close(result.scores, expected, atol=1e-4, rtol=1e-4)
    assert result.predicted == [EMOTIONS[int(i)] for i in expected.argmax(1)]
    assert 0 < result.tokens_computed < result.tokens_naive


def test_prefix_cached_last_logits_equal_full_forward(tiny_llama, prompt):
    engine = MaskedClassifier(tiny_llama, prompt, DIALOGUES, "score", batch_size=3, max_new_tokens=8, label_format="bare", recalibrate=False)
    prefix_kv, _ = engine._prefix(0)
    for batch in engine.batches:
        last, _, _ = engine._dialogue(batch, 0, prefix_kv)
        for b, row in enumerate(batch.rows):
            ids = torch.tensor([prompt.ids(dialogue_ids(tiny_llama.tokenizer, DIALOGUES[row]))])
            full = tiny_llama.model.model(ids).last_hidden_state[0, -1]
            torch.testing.assert_close(tiny_llama.model.model.norm(last[b]), full, atol=1e-5, rtol=1e-5)


def test_layer_subranges_compose_to_the_full_forward(tiny_llama, prompt):
    ids = torch.tensor([prompt.ids(dialogue_ids(tiny_llama.tokenizer, DIALOGUES[2]))])
    t = ids.shape[1]
    positions = torch.arange(t).unsqueeze(0)
    mask = additive_mask(torch.ones(t, t, dtype=torch.bool).tril().unsqueeze(0), torch.float32)
    hidden = tiny_llama.model.model.embed_tokens(ids)
    middle, _, kept = run_layers(tiny_llama, hidden, positions, mask, range(0, 2), keep=[1, 2])
    out, _, _ = run_layers(tiny_llama, middle, positions, mask, range(2, 4))
    full = tiny_llama.model.model(ids, output_hidden_states=True)
    torch.testing.assert_close(tiny_llama.model.model.norm(out), full.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kept[1], full.hidden_states[1], atol=1e-5, rtol=1e-5)
    assert torch.equal(kept[2], middle)


def test_layer_reuse_equals_full_masked_forward_and_computes_less(tiny_llama, prompt):
    top = {2: torch.tensor([1, 7, 30]), 3: torch.tensor([4, 11])}
    engine = MaskedClassifier(tiny_llama, prompt, DIALOGUES, "score", batch_size=2, boundaries=[2], max_new_tokens=8, label_format="bare", recalibrate=False)
    unmodified = engine.classify()
    reused = engine.classify(top)
    fresh = MaskedClassifier(tiny_llama, prompt, DIALOGUES, "score", batch_size=2, max_new_tokens=8, label_format="bare", recalibrate=False).classify(top)
    with mask_neurons(tiny_llama.model, top):
        expected = brute_force_scores(tiny_llama, prompt, DIALOGUES)
    torch.testing.assert_close(reused.scores, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fresh.scores, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(reused.scores, unmodified.scores, atol=1e-3)
    assert reused.tokens_computed == pytest.approx(unmodified.tokens_computed / 2, abs=1)
    # A mask reaching below the kept boundary runs every layer.
    low = {1: torch.tensor([3]), 3: torch.tensor([4])}
    assert engine.classify(low).tokens_computed == unmodified.tokens_computed


def test_generate_parses_first_emotion_word_and_counts_unparseable(tiny_llama, prompt):
    tokenizer = tiny_llama.tokenizer
    anger = label_ids(tokenizer, "bare")[0]
    assert len(anger) == 1
    # Steered to say "anger" first: one new token is exactly the label.
    angry = classify(biased_copy(tiny_llama, anger[0]), prompt, DIALOGUES, "generate", batch_size=2, max_new_tokens=1, label_format="bare")
    assert angry.answers == ["anger"] * len(DIALOGUES)
    assert angry.predicted == ["anger"] * len(DIALOGUES)
    # Steered to a token that spells no emotion: every answer is unparseable (None).
    other = tokenizer.encode("B", add_special_tokens=False)[0]
    lost = classify(biased_copy(tiny_llama, other), prompt, DIALOGUES, "generate", batch_size=2, max_new_tokens=3, label_format="bare")
    assert lost.answers == [tokenizer.decode([other] * 3)] * len(DIALOGUES)
    assert lost.predicted == [None] * len(DIALOGUES)
    assert lost.scores is None


def test_generate_says_which_answers_were_cut_off_at_max_new_tokens(tiny_llama, prompt):
    tokenizer = tiny_llama.tokenizer
    anger = label_ids(tokenizer, "bare")[0][0]
    # Steered to repeat "anger": no EOS within max_new_tokens, so every answer is cut off.
    cut = classify(biased_copy(tiny_llama, anger), prompt, DIALOGUES, "generate", batch_size=2, max_new_tokens=3, label_format="bare")
    assert cut.cut_off == [True] * len(DIALOGUES)
    # Steered to EOS: every answer ended by the model itself.
    ended = classify(biased_copy(tiny_llama, tokenizer.eos_token_id), prompt, DIALOGUES, "generate", batch_size=2, max_new_tokens=3, label_format="bare")
    assert ended.cut_off == [False] * len(DIALOGUES) and ended.answers == [""] * len(DIALOGUES)
    assert classify(tiny_llama, prompt, DIALOGUES, "score", batch_size=2, max_new_tokens=8, label_format="bare").cut_off is None


def test_an_end_of_turn_id_the_generation_config_lists_ends_the_answer(tiny_llama, prompt):
    """Gemma's generation config lists <eos> and <end_of_turn>: a list, not one id. An answer
    that emits the second one ended by itself (engine and hf backend share the rule)."""
    from emoneurons.model.special_tokens import eos_token_ids

    tokenizer = tiny_llama.tokenizer
    turn_end = tokenizer.convert_tokens_to_ids("<|im_start|>")  # stands in for <end_of_turn>
    biased = biased_copy(tiny_llama, turn_end)
    plain = classify(biased, prompt, DIALOGUES, "generate", batch_size=2, max_new_tokens=3, label_format="bare")
    assert plain.cut_off == [True] * len(DIALOGUES)  # not an end id yet: runs to max_new_tokens
    biased.model.generation_config.eos_token_id = [tokenizer.eos_token_id, turn_end]
    assert eos_token_ids(biased) == sorted({tokenizer.eos_token_id, turn_end})
    ended = classify(biased, prompt, DIALOGUES, "generate", batch_size=2, max_new_tokens=3, label_format="bare")
    assert ended.cut_off == [False] * len(DIALOGUES) and ended.answers == [""] * len(DIALOGUES)


def test_generate_equals_transformers_greedy_decoding(tiny_llama, prompt):
    result = classify(tiny_llama, prompt, DIALOGUES, "generate", batch_size=3, max_new_tokens=4, label_format="bare")
    for dialogue, answer in zip(DIALOGUES, result.answers):
        ids = torch.tensor([prompt.ids(dialogue_ids(tiny_llama.tokenizer, dialogue))])
        out = tiny_llama.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False,
            eos_token_id=tiny_llama.tokenizer.eos_token_id, pad_token_id=tiny_llama.tokenizer.pad_token_id,
        )
        new = out[0, ids.shape[1]:].tolist()
        eos = tiny_llama.tokenizer.eos_token_id
        new = new[: new.index(eos)] if eos in new else new
        assert answer == tiny_llama.tokenizer.decode(new, skip_special_tokens=True)


def test_space_labels_score_equals_brute_force(tiny_llama, prompt):
    labels = label_ids(tiny_llama.tokenizer, "space")
    assert labels == [tiny_llama.tokenizer.encode(" " + e, add_special_tokens=False) for e in EMOTIONS]
    assert labels != label_ids(tiny_llama.tokenizer, "bare")
    result = classify(tiny_llama, prompt, DIALOGUES, "score", batch_size=2, label_format="space", max_new_tokens=8)
    contexts = [prompt.ids(dialogue_ids(tiny_llama.tokenizer, d)) for d in DIALOGUES]
    expected = reference.predict(tiny_llama.model, contexts, labels)[0]
    torch.testing.assert_close(result.scores, expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="allowed: bare, space"):
        label_ids(tiny_llama.tokenizer, "bracket")


@pytest.mark.parametrize("recalibrate", [False, True])
def test_calibration_divides_by_the_reference_rows(tiny_llama, prompt, recalibrate):
    from emoneurons.text.chat_prompt import CONTENT_FREE_DIALOGUE

    reference = [CONTENT_FREE_DIALOGUE, DIALOGUES[1]]
    layer = len(tiny_llama.model.model.layers) - 1
    neurons = {layer: torch.arange(0, tiny_llama.model.config.intermediate_size, 2)}
    plain = MaskedClassifier(tiny_llama, prompt, [*DIALOGUES, *reference], "score", batch_size=3, boundaries=[layer], max_new_tokens=8, label_format="bare", recalibrate=False)
    calibrated = MaskedClassifier(tiny_llama, prompt, DIALOGUES, "score", batch_size=3, boundaries=[layer], reference=reference,
                                  recalibrate=recalibrate, max_new_tokens=8, label_format="bare")
    # A masked run first: with a fixed prior it runs the unmodified one itself to get that prior.
    for mask in (neurons, None, neurons):
        raw = plain.classify(mask).scores
        own, ref = raw[: len(DIALOGUES)], raw[len(DIALOGUES) :]
        if not recalibrate:
            ref = plain.classify().scores[len(DIALOGUES) :]
        result = calibrated.classify(mask)
        prior = torch.softmax(ref, 1).mean(0)
        expected = torch.log_softmax(own, 1) - torch.log(prior)
        torch.testing.assert_close(result.scores, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(result.reference_scores, ref, atol=1e-5, rtol=1e-5)
        assert result.predicted == [EMOTIONS[int(i)] for i in expected.argmax(1)]
        assert len(result.predicted) == len(DIALOGUES)
    # Masking moves the reference rows' own scores: recomputing the prior differs from fixing it.
    unmodified_prior = plain.classify().scores[len(DIALOGUES) :]
    assert not torch.allclose(plain.classify(neurons).scores[len(DIALOGUES) :], unmodified_prior)
    masked = calibrated.classify(neurons)
    assert torch.allclose(masked.reference_scores, unmodified_prior, atol=1e-5) != recalibrate
    # A fixed prior: a masked run computes the dialogues only, not the reference rows again.
    bare_engine = MaskedClassifier(tiny_llama, prompt, DIALOGUES, "score", batch_size=3, boundaries=[layer], max_new_tokens=8, label_format="bare", recalibrate=False)
    bare_engine.classify()
    bare_masked = bare_engine.classify(neurons)
    assert (masked.tokens_computed == bare_masked.tokens_computed) != recalibrate
    assert (masked.tokens_naive == bare_masked.tokens_naive) != recalibrate
    # One content-free row: exactly its own (renormalised) label scores are subtracted.
    single = MaskedClassifier(tiny_llama, prompt, DIALOGUES, "score", batch_size=3, reference=[CONTENT_FREE_DIALOGUE], max_new_tokens=8, label_format="bare", recalibrate=False).classify()
    own = plain.classify().scores
    torch.testing.assert_close(
        single.scores, torch.log_softmax(own[: len(DIALOGUES)], 1) - torch.log_softmax(own[len(DIALOGUES) : len(DIALOGUES) + 1], 1),
        atol=1e-5, rtol=1e-5)
    bare = MaskedClassifier(tiny_llama, prompt, DIALOGUES, "score", batch_size=3, max_new_tokens=8, label_format="bare", recalibrate=False).classify()
    assert single.tokens_computed > bare.tokens_computed  # the reference row's tokens are counted
    with pytest.raises(ValueError, match="need method score"):
        MaskedClassifier(tiny_llama, prompt, DIALOGUES, "generate", batch_size=3, reference=reference, max_new_tokens=8, label_format="bare", recalibrate=False)


def test_shared_prefix_attention_equals_softmax_over_prefix_and_causal_own_keys():
    from types import SimpleNamespace

    from emoneurons.evaluate.layer_runner import KVStore
    from emoneurons.evaluate.shared_prefix_attention import shared_prefix_attention

    torch.manual_seed(0)
    b, heads, kv_heads, t, p, d = 3, 6, 2, 5, 7, 8
    query = torch.randn(b, heads, t, d)
    key, value = torch.randn(b, kv_heads, t, d), torch.randn(b, kv_heads, t, d)
    prefix = (torch.randn(1, kv_heads, p, d), torch.randn(1, kv_heads, p, d))
    module = SimpleNamespace(layer_idx=4)
    out, _ = shared_prefix_attention(module, query, key, value, None, scaling=0.3, shared_prefix_cache=KVStore({}, shared_prefix={4: prefix}))
    keys = torch.cat([prefix[0].expand(b, -1, -1, -1), key], 2).repeat_interleave(heads // kv_heads, 1)
    values = torch.cat([prefix[1].expand(b, -1, -1, -1), value], 2).repeat_interleave(heads // kv_heads, 1)
    allowed = torch.cat([torch.ones(t, p, dtype=torch.bool), torch.ones(t, t, dtype=torch.bool).tril()], 1)
    scores = (query @ keys.transpose(-1, -2) * 0.3).masked_fill(~allowed, float("-inf"))
    expected = (torch.softmax(scores, -1) @ values).transpose(1, 2)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # No prefix for this layer: causal over the own tokens only.
    alone, _ = shared_prefix_attention(SimpleNamespace(layer_idx=0), query, key, value, None, scaling=0.3, shared_prefix_cache=KVStore({}, shared_prefix={4: prefix}))
    own = (query @ keys[:, :, p:].transpose(-1, -2) * 0.3).masked_fill(~allowed[:, p:], float("-inf"))
    torch.testing.assert_close(alone, (torch.softmax(own, -1) @ values[:, :, p:]).transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_shared_prefix_attention_path_equals_concatenating_path(tiny_llama, prompt):
    top = {2: torch.tensor([1, 7, 30]), 3: torch.tensor([4, 11])}
    low = {0: torch.tensor([5, 6]), 3: torch.tensor([9])}
    runs = {}
    for shared in (True, False):
        engine = MaskedClassifier(tiny_llama, prompt, DIALOGUES, "score", batch_size=2, boundaries=[2], shared_attention=shared,
                                  reference=DIALOGUES[:2], max_new_tokens=8, label_format="bare", recalibrate=False)
        runs[shared] = [engine.classify(), engine.classify(top), engine.classify(low)]
    for fast, slow in zip(runs[True], runs[False]):
        torch.testing.assert_close(fast.scores, slow.scores, atol=1e-5, rtol=1e-5)
        assert fast.tokens_computed == slow.tokens_computed
    assert tiny_llama.model.config._attn_implementation != "emoneurons_shared_prefix"  # switched back after each pass


def test_ffn_on_real_tokens_only_leaves_real_positions_unchanged(tiny_llama, prompt):
    rows = [dialogue_ids(tiny_llama.tokenizer, d) for d in DIALOGUES[:3]]
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(row)
    valid = torch.arange(width).unsqueeze(0) < torch.tensor([len(r) for r in rows]).unsqueeze(1)
    assert not bool(valid.all())
    hidden = tiny_llama.model.model.embed_tokens(ids)
    positions = torch.arange(width).unsqueeze(0)
    packed, packed_store, _ = run_layers(tiny_llama, hidden, positions, None, range(4), real=real_token_index(valid))
    padded, _, _ = run_layers(tiny_llama, hidden, positions, None, range(4))
    torch.testing.assert_close(packed[valid], padded[valid], atol=1e-5, rtol=1e-5)
    # The last layer's FFN on the read positions only: those outputs and every key/value unchanged.
    lengths = valid.sum(1)
    read = torch.arange(len(rows)) * width + lengths - 1
    last, last_store, _ = run_layers(tiny_llama, hidden, positions, None, range(4), real=real_token_index(valid), read=read)
    rows_idx = torch.arange(len(rows))
    torch.testing.assert_close(last[rows_idx, lengths - 1], padded[rows_idx, lengths - 1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(last[valid], padded[valid], atol=1e-3)  # the other positions were skipped
    for layer in range(4):
        for got, want in zip(last_store.new[layer], packed_store.new[layer]):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # `read` acts on the model's last layer only: a run that stops earlier computes every position.
    early, _, _ = run_layers(tiny_llama, hidden, positions, None, range(3), real=real_token_index(valid), read=read)
    torch.testing.assert_close(early[valid], run_layers(tiny_llama, hidden, positions, None, range(3))[0][valid], atol=1e-5, rtol=1e-5)
    assert all(not block.mlp._forward_hooks and not block.mlp._forward_pre_hooks for block in tiny_llama.model.model.layers)


def test_label_scores_stay_on_the_device_inside_the_loop(tiny_llama, prompt, tensor_reads):
    """Host reads of a masked run do not grow with its number of batches (one copy at the end)."""
    neurons = {1: torch.tensor([3, 9])}
    reads, scores = [], []
    for batch_size in (1, len(DIALOGUES)):
        engine = MaskedClassifier(tiny_llama, prompt, DIALOGUES, "score", batch_size=batch_size, reference=DIALOGUES[:2], max_new_tokens=8, label_format="bare", recalibrate=False)
        engine.classify()
        tensor_reads.clear()
        scores.append(engine.classify(neurons).scores)
        reads.append(dict(tensor_reads))
        assert len(engine.batches) == (len(DIALOGUES) + 2 if batch_size == 1 else 2)
    assert reads[0] == reads[1] == {"cpu": 1}
    torch.testing.assert_close(scores[0], scores[1], atol=1e-5, rtol=1e-5)


def test_shot_instruction_first_wraps_only_the_first_example(tiny_llama):
    from emoneurons.text.paper_prompts.classify import CLASSIFY_USER_PROMPT

    opening = CLASSIFY_USER_PROMPT.split("{prompt}")[0].strip()
    tokenizer = tiny_llama.tokenizer
    every = classification_prompt(tokenizer, SHOTS, "every", prompt_format="chat")
    first = classification_prompt(tokenizer, SHOTS, "first", prompt_format="chat")
    assert every == classification_prompt(tokenizer, SHOTS, prompt_format="chat")  # the default keeps the paper's prompt on every example
    decoded = {name: tokenizer.decode(p.prefix) for name, p in (("every", every), ("first", first))}
    # The prefix ends with the question's opening; the examples' turns come before it.
    assert decoded["every"].count(opening) == len(SHOTS) + 1
    assert decoded["first"].count(opening) == 2
    assert all(dialogue in decoded["first"] for dialogue, _ in SHOTS)
    assert first.suffix == every.suffix and len(first.prefix) < len(every.prefix)
    with pytest.raises(ValueError, match="allowed: every, first"):
        classification_prompt(tokenizer, SHOTS, "none", prompt_format="chat")
