"""model/hooks.py: one context manager per hook site, the layer bounds checked once before any
hook is registered, every hook removed on exit (also when the block raises)."""

from __future__ import annotations

import pytest
import torch

from emoneurons.model.architecture import decoder_layers, gated_ffns
from emoneurons.model.hooks import around_mlp, on_block_output, on_down_proj_input, on_gate_output


def _hooks(model: torch.nn.Module) -> int:
    # Counted against the start of each test: the session's tiny model may already carry hooks that
    # are not ours (transformers 5 registers its output-recording hooks on the layers the first time
    # a forward asks for output_hidden_states, and keeps them).
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_each_site_sees_its_tensor_and_leaves_no_hook(tiny_llama):
    model, ffns = tiny_llama.model, gated_ffns(tiny_llama.model)
    before = _hooks(model)
    ids = torch.tensor([[1, 2, 3, 4]])
    seen = {}
    with torch.no_grad(), on_down_proj_input(ffns, {1: lambda x: seen.__setitem__("product", x.shape)}), \
            on_gate_output(ffns, {2: lambda g: seen.__setitem__("gate", g.shape)}):
        model(ids)
    assert seen == {"product": torch.Size([1, 4, 64]), "gate": torch.Size([1, 4, 64])}
    assert _hooks(model) == before
    with torch.no_grad():
        plain = model(ids).logits
        with around_mlp(decoder_layers(model), {0: (lambda x: x, lambda out: out * 0)}):
            zeroed = model(ids).logits
    assert not torch.equal(plain, zeroed) and _hooks(model) == before
    with torch.no_grad():
        states = model(ids, output_hidden_states=True).hidden_states  # may leave transformers' hooks: counted again
        before = _hooks(model)
        with on_block_output(decoder_layers(model), {2: lambda h: seen.__setitem__("block", h)}):
            model(ids)
    assert torch.equal(seen["block"], states[3]) and _hooks(model) == before  # block 2's output: hidden_states[3]


def test_a_layer_outside_the_model_is_one_line_before_any_hook(tiny_llama):
    ffns, before = gated_ffns(tiny_llama.model), _hooks(tiny_llama.model)
    for layer in (4, -1):  # -1 would otherwise hook the last layer
        with pytest.raises(ValueError, match=rf"layer {layer} is outside the model \(0..3\)"):
            with on_down_proj_input(ffns, {0: lambda x: None, layer: lambda x: None}):
                pass
        assert _hooks(tiny_llama.model) == before


def test_hooks_are_removed_when_the_block_raises(tiny_llama):
    ffns, before = gated_ffns(tiny_llama.model), _hooks(tiny_llama.model)
    with pytest.raises(RuntimeError, match="stop"):
        with on_gate_output(ffns, {layer: lambda g: None for layer in range(4)}):
            raise RuntimeError("stop")
    assert _hooks(tiny_llama.model) == before
