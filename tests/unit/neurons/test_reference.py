"""The method on one page (neurons/reference.py) against its accelerators, end to end on the tiny
Llama: fast counting gives the same f and T; selection on them; the prefix-sharing classifier
gives the same label log-probabilities, unmodified and with the selected neurons masked."""

from __future__ import annotations

import copy

import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.classify import MaskedClassifier
from emoneurons.neurons import reference
from emoneurons.neurons.counting import activation_counts
from emoneurons.neurons.masking import neurons_by_layer
from emoneurons.text.chat_prompt import dialogue_ids, label_ids
from emoneurons.text.classification_prompt import classification_prompt

DIALOGUES = [
    "A: I can't believe this happened!\nB: Oh no, that is terrible.",
    "A: That smell is revolting.",
    "A: What a wonderful day.\nB: I miss her so much.",
    "A: Oh no!",
    "A: I'm scared of the dark.\nB: That is terrible.",
    "A: I miss her so much.",
]
LABELS = list(EMOTIONS)  # every emotion once: T > 0 for all, so selection is defined
SHOTS = [("A: What a wonderful day.", "happiness")]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("activation,positions", [("gate", "all"), ("product", "last")])
def test_method_end_to_end_equals_the_accelerators(tiny_llama, activation, positions):
    tok, model = tiny_llama.tokenizer, tiny_llama.model
    prompt = classification_prompt(tok, SHOTS, prompt_format="chat")
    own = [dialogue_ids(tok, d) for d in DIALOGUES]
    # 1. count, with the classification prompt's prefix fed first (count.text: prompt)
    f_ref, T_ref = reference.count_activations(model, own, LABELS, prefix=classification_prompt(tok, prompt_format="chat").prefix,
                                               positions=positions, activation=activation)
    f, T, _ = activation_counts(tiny_llama, DIALOGUES, LABELS, text="prompt", positions=positions, activation=activation,
                             batch_size=3, max_length=1024, max_padding=1.0, prompt_format="chat")
    assert torch.equal(f, f_ref) and torch.equal(T, T_ref)
    assert 0 < int(f.sum()) < int(T.sum()) * f.shape[0] * f.shape[1]  # neither none nor all active
    # 2. select
    selection = reference.select(f_ref, T_ref, top_rate=0.05, filter_rate=0.5, activation_bar_ratio=0.5)
    emotion = max(EMOTIONS, key=lambda e: selection.per_emotion[e])
    neurons = reference.neurons_of(selection, emotion)
    assert neurons  # something to mask
    # 3-4. mask and classify, calibration off
    contexts = [prompt.ids(ids) for ids in own]
    labels = label_ids(tok, "bare")
    unmodified, predicted = reference.predict(model, contexts, labels)
    masked, masked_predicted = reference.predict(model, contexts, labels, neurons)
    engine = MaskedClassifier(tiny_llama, prompt, DIALOGUES, "score", batch_size=4, boundaries=[2], max_new_tokens=8, label_format="bare", recalibrate=False)
    fast = engine.classify()
    fast_masked = engine.classify(neurons_by_layer(selection.neurons[emotion]))
    torch.testing.assert_close(fast.scores, unmodified, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_masked.scores, masked, atol=1e-5, rtol=1e-5)
    assert fast.predicted == predicted and fast_masked.predicted == masked_predicted
    assert not torch.allclose(masked, unmodified, atol=1e-3)  # the mask changed something
    # Graded masking: the activations multiplied by 0.5 instead of zeroed, on a layer-reused run.
    graded, _ = reference.predict(model, contexts, labels, neurons, scale=0.5)
    fast_graded = engine.classify(neurons_by_layer(selection.neurons[emotion]), scale=0.5)
    torch.testing.assert_close(fast_graded.scores, graded, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(graded, masked, atol=1e-3) and not torch.allclose(graded, unmodified, atol=1e-3)


@pytest.mark.parametrize("scale", [0.0, 0.25])
def test_masking_equals_scaled_down_proj_columns_and_hooks_go(tiny_llama, scale):
    model = tiny_llama.model
    neurons = {1: [0, 5, 9], 3: [2, 63]}
    ids = torch.tensor([tiny_llama.tokenizer.encode(DIALOGUES[0])])
    with torch.no_grad():
        with reference.masked(model, neurons, scale):
            hooked = model(ids).logits
        scaled = copy.deepcopy(model)
        for layer, index in neurons.items():
            scaled.model.layers[layer].mlp.down_proj.weight[:, index] *= scale
        torch.testing.assert_close(hooked, scaled(ids).logits, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(hooked, model(ids).logits, atol=1e-3)
    for layer in model.model.layers:
        assert not layer.mlp._forward_pre_hooks and not layer.mlp.down_proj._forward_pre_hooks


def test_counts_only_the_dialogue_tokens_and_truncates(tiny_llama):
    tok = tiny_llama.tokenizer
    own = [dialogue_ids(tok, d) for d in DIALOGUES]
    prefix = [tok.bos_token_id, tok.bos_token_id]
    _, T = reference.count_activations(tiny_llama.model, own, LABELS, prefix=prefix)
    assert T.tolist() == [len(ids) for ids in own]
    _, T_cut = reference.count_activations(tiny_llama.model, own, LABELS, prefix=prefix, max_length=5)
    assert T_cut.tolist() == [min(len(ids), 3) for ids in own]
    _, T_last = reference.count_activations(tiny_llama.model, own, LABELS, prefix=prefix, positions="last")
    assert T_last.tolist() == [1] * len(EMOTIONS)
    with pytest.raises(ValueError, match="activation 'relu'"):
        reference.count_activations(tiny_llama.model, own, LABELS, prefix=prefix, activation="relu")
