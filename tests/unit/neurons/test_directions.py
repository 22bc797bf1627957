"""neurons/directions.py's batched running sums against a slow, obvious reference (one dialogue at a
time, the model's own output_hidden_states, the FFN's input read by a plain hook of the test's own),
on every family; and model/architecture.py's write directions against what one neuron really adds
to the residual stream in a forward pass."""

from __future__ import annotations

import copy

import pytest
import torch

from emoneurons.emotions import EMOTION_INDEX
from emoneurons.model.architecture import FAMILIES, gated_ffns, write_directions
from emoneurons.model.loading import LoadedModel
from emoneurons.neurons.directions import ClassSums, accumulate_class_sums
from helpers.tiny_models import FAMILY_FFN, build_family

DIALOGUES = [
    "A: I can't believe this happened!\nB: Oh no, that is terrible.",
    "A: What a wonderful day.",
    "A: That smell is revolting.\nB: I'm scared of the dark.\nA: I miss her so much.",
    "A: Oh no!",
    "A: I'm scared of the dark.\nB: That is terrible.",
    "A: I miss her so much.",
    "A: You broke it again, I am furious!",
]
LABELS = ["anger", "happiness", "disgust", "surprise", "fear", "sadness", "anger"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_lm(request, tiny_tokenizer):
    return build_family(tiny_tokenizer, request.param)


@torch.inference_mode()
def reference_sums(lm: LoadedModel, positions: str = "all") -> ClassSums:
    """One dialogue at a time: BOS (if the tokenizer adds one) + the dialogue's own tokens through
    a copy of the model whose final norm is the identity, so that output_hidden_states[l + 1] is
    the residual after block l for every block; the down_proj input from the MLP's input."""
    model = copy.deepcopy(lm.model)
    model.model.norm = torch.nn.Identity()
    layers = model.model.layers
    mlp_inputs = {}
    handles = [layer.mlp.register_forward_pre_hook(lambda m, args, i=i: mlp_inputs.__setitem__(i, args[0][0]))
               for i, layer in enumerate(layers)]
    hidden_size = model.config.hidden_size
    sums = ClassSums.zeros(len(layers), hidden_size, model.config.intermediate_size)
    try:
        for dialogue, label in zip(DIALOGUES, LABELS, strict=True):
            full = lm.tokenizer.encode(dialogue, add_special_tokens=True)
            own = lm.tokenizer.encode(dialogue, add_special_tokens=False)
            start = len(full) - len(own)
            counted = list(range(start, len(full)))[-1:] if positions == "last" else list(range(start, len(full)))
            states = model(torch.tensor([full]), output_hidden_states=True).hidden_states
            e = EMOTION_INDEX[label]
            for layer, block in enumerate(layers):
                mlp = block.mlp
                h = states[layer + 1][0, counted].double()
                sums.hidden[layer, e] += h.sum(0)
                sums.squares[layer, e] += (h * h).sum(0)
                x = mlp_inputs[layer][counted]
                if hasattr(mlp, "gate_up_proj"):
                    gate, up = mlp.gate_up_proj(x).chunk(2, dim=-1)
                    value = mlp.activation_fn(gate) * up
                else:
                    value = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
                sums.values[layer, e] += value.double().sum(0)
            sums.tokens[e] += len(counted)
            sums.dialogues[e] += 1
    finally:
        for handle in handles:
            handle.remove()
    return sums


def batched_sums(lm: LoadedModel, *, side: str, positions: str = "all", chunks: int = 1) -> ClassSums:
    tokenizer = copy.deepcopy(lm.tokenizer)
    tokenizer.padding_side = side
    padded = LoadedModel(model=lm.model, tokenizer=tokenizer, name=lm.name)
    sums = ClassSums.for_model(padded)
    step = -(-len(DIALOGUES) // chunks)
    for start in range(0, len(DIALOGUES), step):  # the stage feeds the split chunk by chunk
        accumulate_class_sums(padded, DIALOGUES[start:start + step], LABELS[start:start + step], sums, text="dialogue",
                              positions=positions, batch_size=3, max_length=1024, prompt_format=None, max_padding=1.0)
    return sums


def assert_sums_close(fast: ClassSums, slow: ClassSums) -> None:
    assert torch.equal(fast.tokens, slow.tokens) and torch.equal(fast.dialogues, slow.dialogues)
    for name in ("hidden", "squares", "values"):
        torch.testing.assert_close(getattr(fast, name), getattr(slow, name), rtol=1e-5, atol=1e-4, msg=name)


def test_batched_sums_equal_one_dialogue_at_a_time_on_every_family(family_lm):
    slow = reference_sums(family_lm)
    assert int(slow.tokens.sum()) > len(DIALOGUES) and bool((slow.tokens > 0).all())
    for side in ("left", "right"):  # padded batches of up to three, both padding sides
        assert_sums_close(batched_sums(family_lm, side=side), slow)


def test_last_positions_and_chunks_add_up(tiny_llama):
    slow = reference_sums(tiny_llama, positions="last")
    assert torch.equal(slow.tokens, slow.dialogues)  # one token per dialogue
    assert_sums_close(batched_sums(tiny_llama, side="right", positions="last"), slow)
    assert_sums_close(batched_sums(tiny_llama, side="left", chunks=3), reference_sums(tiny_llama))


@torch.inference_mode()
def test_write_direction_is_what_one_neuron_adds_to_the_residual(family_lm):
    """Every down_proj input zeroed but neuron i's (left as the forward computes it): block l's
    output minus its output with all of them zeroed is neuron i's write alone (after Gemma's
    post-FFN norm), which must point along write_directions[l][i] (or against it, with the
    value's sign). Gemma's post-FFN norm gains are made random first (they start at 0, a gain of
    1, where raw columns would pass too), and raw columns are shown to fail there."""
    model = copy.deepcopy(family_lm.model)
    normed = [layer.post_feedforward_layernorm for layer in model.model.layers if hasattr(layer, "post_feedforward_layernorm")]
    for norm in normed:
        norm.weight.uniform_(-0.9, 2.0, generator=torch.Generator().manual_seed(1))
    ffns = gated_ffns(model)
    ids = torch.tensor([family_lm.tokenizer.encode(DIALOGUES[2])])
    write = write_directions(model)
    assert [w.shape for w in write] == [(FAMILY_FFN, model.config.hidden_size)] * len(ffns)
    checked, raw_cos = 0, []
    for layer in range(len(ffns)):
        for neuron in (0, 7, FAMILY_FFN - 1):
            outputs = []
            for keep in (neuron, None):
                def only(module, args, keep=keep):
                    x = torch.zeros_like(args[0])
                    if keep is not None:
                        x[..., keep] = args[0][..., keep]
                    return (x,)
                block_out = {}
                handles = [ffns[layer].down_proj.register_forward_pre_hook(only),
                           model.model.layers[layer].register_forward_hook(
                               lambda m, a, out: block_out.__setitem__("h", out[0] if isinstance(out, tuple) else out))]
                try:
                    model(ids)
                finally:
                    for handle in handles:
                        handle.remove()
                outputs.append(block_out["h"][0, -1].double())
            added = outputs[0] - outputs[1]
            if added.norm() < 1e-6:  # the neuron's value is ~0 on this token
                continue
            cos = torch.nn.functional.cosine_similarity(added, write[layer][neuron].double(), dim=0)
            assert abs(float(cos)) > 1 - 1e-4, (layer, neuron, float(cos))
            column = ffns[layer].down_proj.weight[:, neuron].double()
            raw_cos.append(abs(float(torch.nn.functional.cosine_similarity(added, column, dim=0))))
            checked += 1
    assert checked >= len(ffns)
    if normed:  # the norm matters here: the raw column is not the write direction
        assert min(raw_cos) < 0.99
