"""activation_counts against the one-dialogue-at-a-time reference (neurons/reference.py) on the tiny Llama."""

from __future__ import annotations

import copy

import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.model.architecture import UnsupportedModelError
from emoneurons.model.batching import length_batches
from emoneurons.model.loading import LoadedModel
from emoneurons.neurons import reference
from emoneurons.neurons.counting import activation_counts, counting_inputs, padded_batch
from emoneurons.text.chat_prompt import dialogue_ids
from emoneurons.text.classification_prompt import classification_prompt
from emoneurons.text.prompt_format import added_special_prefix
from helpers.synthetic_inputs import COUNTING_DIALOGUES as DIALOGUES
from helpers.synthetic_inputs import COUNTING_LABELS as LABELS

pytestmark = pytest.mark.usefixtures("one_thread")


def naive_counts(lm: LoadedModel, dialogues, emotions, *, positions, text, activation):
    """The library's one-page reference (neurons/reference.py): one dialogue at a time, no padding."""
    tok = lm.tokenizer
    prefix = classification_prompt(tok, prompt_format="chat").prefix if text == "prompt" else added_special_prefix(tok)
    own = [dialogue_ids(tok, d) for d in dialogues]
    return reference.count_activations(lm.model, own, emotions, prefix=prefix, positions=positions, activation=activation)


def with_padding_side(lm: LoadedModel, side: str) -> LoadedModel:
    tokenizer = copy.deepcopy(lm.tokenizer)
    tokenizer.padding_side = side
    return LoadedModel(model=lm.model, tokenizer=tokenizer, name=lm.name)


@pytest.mark.parametrize("activation", ["gate", "product"])
@pytest.mark.parametrize("text", ["dialogue", "prompt"])
@pytest.mark.parametrize("positions", ["all", "last"])
def test_counts_equal_naive_reference(tiny_llama, activation, text, positions):
    f_ref, T_ref = naive_counts(tiny_llama, DIALOGUES, LABELS, positions=positions, text=text, activation=activation)
    for padding_side in ("left", "right"):
        lm = with_padding_side(tiny_llama, padding_side)
        f, T, _ = activation_counts(
            lm, DIALOGUES, LABELS, positions=positions, text=text, activation=activation, batch_size=3, max_length=512,
            prompt_format="chat", max_padding=1.0,  # batches of 3 whatever their lengths: padding in every batch
        )
        assert f.dtype == torch.int64 and T.dtype == torch.int64
        assert f.shape == (4, 64, 6) and T.shape == (6,)
        assert torch.equal(T, T_ref), padding_side
        assert torch.equal(f, f_ref), padding_side
    # The comparison means something: some neurons fire on some counted tokens, not all on all.
    assert 0 < int(f.sum()) < int(T.sum()) * 4 * 64
    if positions == "last":
        assert T.tolist() == [LABELS.count(e) for e in EMOTIONS]


def test_batches_really_pad_and_mix_lengths(tiny_llama):
    items, _ = counting_inputs(
        tiny_llama.tokenizer, DIALOGUES, LABELS, text="dialogue", positions="all", max_length=512
    )
    lengths = [len(i.ids) for i in items]
    for indices in length_batches(lengths, 3, max_padding=1.0):
        if len(indices) > 1:
            assert len({lengths[i] for i in indices}) > 1  # the equality test above covers padded rows
    batch = padded_batch(items[:3], pad_id=0, padding_side="left")
    width = batch.input_ids.shape[1]
    assert batch.attention_mask.sum().item() == sum(lengths[:3]) < 3 * width


def test_length_batches_bound_padding():
    lengths = [50, 48, 47, 46, 30, 29, 5, 100, 99, 98, 97, 96, 95, 94, 93, 92]
    batches = length_batches(lengths, batch_size=4, max_padding=0.1)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        width = max(lengths[i] for i in b)
        assert len(b) <= 4 and lengths[b[0]] == width
        assert width * len(b) - sum(lengths[i] for i in b) <= 0.1 * width * len(b)
    assert [[lengths[i] for i in b] for b in batches] == [
        [100, 99, 98, 97], [96, 95, 94, 93], [92], [50, 48, 47, 46], [30, 29], [5]
    ]


def test_bos_is_fed_but_not_counted(tiny_llama):
    from tokenizers import processors

    tokenizer = copy.deepcopy(tiny_llama.tokenizer)
    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)]
    )
    assert tokenizer.encode("A: hi", add_special_tokens=True)[0] == tokenizer.bos_token_id
    assert added_special_prefix(tokenizer) == [tokenizer.bos_token_id]  # what the reference feeds first
    lm = LoadedModel(model=tiny_llama.model, tokenizer=tokenizer, name="tiny-bos")
    f, T, _ = activation_counts(lm, DIALOGUES, LABELS, positions="all", text="dialogue", activation="gate", batch_size=4, max_length=512)
    f_ref, T_ref = naive_counts(lm, DIALOGUES, LABELS, positions="all", text="dialogue", activation="gate")
    own = [len(tokenizer.encode(d, add_special_tokens=False)) for d in DIALOGUES]
    assert T.tolist() == [sum(n for n, e in zip(own, LABELS) if e == emotion) for emotion in EMOTIONS]
    assert torch.equal(T, T_ref) and torch.equal(f, f_ref)


def test_truncation_warns_and_counts_only_kept_tokens(tiny_llama):
    lengths = [len(tiny_llama.tokenizer.encode(d, add_special_tokens=False)) for d in DIALOGUES]
    limit = 10
    assert sum(n > limit for n in lengths) >= 2
    with pytest.warns(UserWarning, match=rf"{sum(n > limit for n in lengths)} of 7 dialogues truncated"):
        _, T, _ = activation_counts(tiny_llama, DIALOGUES, LABELS, batch_size=4, max_length=limit, text="dialogue", positions="all", activation="gate")
    assert T.tolist() == [sum(min(n, limit) for n, e in zip(lengths, LABELS) if e == emotion) for emotion in EMOTIONS]


def test_hooks_are_removed(tiny_llama):
    activation_counts(tiny_llama, DIALOGUES[:2], LABELS[:2], activation="gate", batch_size=2, max_length=1024, text="dialogue", positions="all")
    activation_counts(tiny_llama, DIALOGUES[:2], LABELS[:2], activation="product", batch_size=2, max_length=1024, text="dialogue", positions="all")
    for layer in tiny_llama.model.model.layers:
        assert not layer.mlp.gate_proj._forward_hooks and not layer.mlp.down_proj._forward_pre_hooks


def test_unknown_emotion_is_rejected(tiny_llama):
    with pytest.raises(ValueError, match="unknown emotion 'joy'"):
        activation_counts(tiny_llama, ["A: hi"], ["joy"], batch_size=16, max_length=1024, text="dialogue", positions="all", activation="gate")


def test_model_without_gated_ffn_fails_before_any_work():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=32)).eval()
    lm = LoadedModel(model=model, tokenizer=None, name="tiny-gpt2")  # never reached: no tokenizer needed
    with pytest.raises(UnsupportedModelError, match="GPT2LMHeadModel.*gate_proj"):
        activation_counts(lm, ["A: hi"], ["anger"], batch_size=16, max_length=1024, text="dialogue", positions="all", activation="gate")


def test_counts_stay_on_the_device_inside_the_loop(tiny_llama, tensor_reads):
    """Host reads do not grow with the number of batches: the counts are read once, at the end."""
    reads = []
    results = []
    for batch_size, max_padding in ((1, 0.1), (len(DIALOGUES), 1.0)):
        tensor_reads.clear()
        results.append(activation_counts(tiny_llama, DIALOGUES, LABELS, batch_size=batch_size, max_length=1024, max_padding=max_padding, text="dialogue", positions="all", activation="gate"))
        reads.append(dict(tensor_reads))
    assert reads[0] == reads[1] and reads[0].get("cpu", 0) <= 2
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
