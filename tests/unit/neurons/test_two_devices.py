"""Counting, cards and steering on a model whose decoder layers sit on two devices (tests/helpers/two_device.py:
the first layers on cpu, the rest on meta, any call that mixes the two raising): every tensor they
make for a layer is made on that layer's device, not on `lm.device`. The cpu layers' results
equal those of the same model all on the cpu; the meta layers' results exist on meta (shapes)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.model.batching import length_batches
from emoneurons.neurons.counting import activation_counts, count_batches, counting_inputs, layer_counters
from emoneurons.neurons.masking import ffn_modules, mask_neurons, scale_neurons, scale_neurons_per_row
from emoneurons.neurons.top_activations import activity_by_layer, neuron_activity
from helpers.synthetic_inputs import COUNTING_DIALOGUES, COUNTING_LABELS
from helpers.two_device import split_over_cpu_and_meta, strict_devices

pytestmark = pytest.mark.usefixtures("one_thread")

# The counting tests' dialogues (lengths 1 to ~40 tokens, every emotion), the first six.
DIALOGUES, LABELS = COUNTING_DIALOGUES[:6], COUNTING_LABELS[:6]
CPU_LAYERS = 2  # of the tiny Llama's 4


@pytest.fixture(scope="module")
def two_devices(tiny_llama):
    return split_over_cpu_and_meta(tiny_llama, CPU_LAYERS)


def test_the_split_model_really_spans_two_devices_that_do_not_mix(two_devices):
    layers = two_devices.model.model.layers
    assert [next(layer.parameters()).device.type for layer in layers] == ["cpu", "cpu", "meta", "meta"]
    assert two_devices.device.type == "cpu"  # lm.device: what device-blind code would use
    with strict_devices(), pytest.raises(RuntimeError, match="same device"):
        torch.ones(2, 3, device="meta").mul_(torch.ones(2, 3))  # torch alone lets this one through


@pytest.mark.parametrize("activation", ["gate", "product"])
@pytest.mark.parametrize("positions", ["all", "last"])  # the threshold path and the gather path
def test_counting_follows_each_layers_device(tiny_llama, two_devices, activation, positions):
    items, _ = counting_inputs(tiny_llama.tokenizer, DIALOGUES, LABELS, text="dialogue", positions=positions, max_length=512)
    batches = length_batches([len(item.ids) for item in items], 3, max_padding=1.0)
    whole, counts = layer_counters(ffn_modules(two_devices.model))
    assert whole is None and [c.device.type for c in counts] == ["cpu", "cpu", "meta", "meta"]
    T = torch.zeros(len(EMOTIONS), dtype=torch.int64)
    with strict_devices():
        count_batches(two_devices, items, batches, counts, T, activation=activation)
    f, T_all, _ = activation_counts(tiny_llama, DIALOGUES, LABELS, positions=positions, activation=activation, batch_size=3,
                                 max_length=512, max_padding=1.0, text="dialogue")
    assert torch.equal(T, T_all)
    assert torch.equal(torch.stack(counts[:CPU_LAYERS]).permute(0, 2, 1), f[:CPU_LAYERS])
    assert 0 < int(f[:CPU_LAYERS].sum())
    assert all(c.shape == (len(EMOTIONS), 64) and c.dtype == torch.int64 for c in counts[CPU_LAYERS:])


def test_cards_follow_each_layers_device(tiny_llama, two_devices):
    neurons = [(0, 3), (1, 17), (3, 5), (2, 60), (3, 1)]
    items, _ = counting_inputs(tiny_llama.tokenizer, DIALOGUES, LABELS, text="dialogue", positions="all", max_length=512)
    with strict_devices():
        token_counts, layers = activity_by_layer(two_devices, items, neurons, k=2, batch_size=4)
    assert {layer: running.top.values.device.type for layer, running in layers.items()} == {0: "cpu", 1: "cpu", 2: "meta", 3: "meta"}
    expected = neuron_activity(tiny_llama, DIALOGUES, neurons, k=2, batch_size=4, max_length=1024)
    assert torch.equal(token_counts, expected.token_counts)
    for layer in range(CPU_LAYERS):
        running = layers[layer]
        assert torch.equal(running.top.values, expected.top.values[:, running.columns])
        assert torch.equal(running.top.dialogue, expected.top.dialogue[:, running.columns])
        assert torch.equal(running.token_active, expected.token_active[:, running.columns])
    assert layers[3].token_active.shape == (token_counts.shape[0], 2)


@pytest.mark.parametrize("how", ["per_row", "all_rows", "mask"])
def test_steering_follows_each_layers_device(tiny_llama, two_devices, how):
    """Neurons steered in a cpu layer and a meta layer: the forward runs through both devices and
    the cpu part is the all-cpu model's steered output."""
    neurons = {1: torch.tensor([2, 9, 40]), 3: torch.tensor([1, 5])}
    ids = torch.tensor([tiny_llama.tokenizer.encode("A: What a wonderful day.")] * 2)

    def steered(lm, steer=True):
        if not steer:
            return contextlib.nullcontext()
        if how == "per_row":
            return scale_neurons_per_row(lm.model, [(neurons, 4.0), ({}, 1.0)])
        return scale_neurons(lm.model, neurons, 4.0) if how == "all_rows" else mask_neurons(lm.model, neurons)

    def last_cpu_layer_output(lm, steer=True):
        seen = {}
        handle = lm.model.model.layers[CPU_LAYERS - 1].register_forward_hook(lambda m, a, out: seen.setdefault("out", out))
        try:
            with torch.inference_mode(), steered(lm, steer):
                final = lm.model.model(input_ids=ids, use_cache=False).last_hidden_state
        finally:
            handle.remove()
        out = seen["out"]
        return (out[0] if isinstance(out, tuple) else out), final

    with strict_devices():
        split, final = last_cpu_layer_output(two_devices)
    assert final.device.type == "meta" and final.shape == (2, ids.shape[1], 32)
    expected, _ = last_cpu_layer_output(tiny_llama)
    assert torch.equal(split, expected)
    plain, _ = last_cpu_layer_output(tiny_llama, steer=False)
    assert not torch.equal(plain[0], expected[0])  # the comparison means something: layer 1 was steered
