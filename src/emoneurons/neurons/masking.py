"""FFN neurons of gated (SwiGLU) decoders: finding them, naming layer ranges, masking them.

Neuron u = (layer l, index i) is the i-th input of layer l's `mlp.down_proj`, i.e. the i-th
entry of act_fn(gate) * up (model/architecture.py: gate_proj/up_proj, or Phi-3's fused
gate_up_proj). Masking sets that entry to zero on every token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import get_args

import torch
from torch import nn

from emoneurons.model.architecture import GatedFFN, gated_ffns
from emoneurons.model.hooks import at_layer, on_down_proj_input
from emoneurons.params import LayerRange

__all__ = ["LAYER_RANGES", "ffn_modules", "layer_span", "mask_neurons",
           "neurons_by_layer", "restrict_layers"]

LAYER_RANGES = get_args(LayerRange)


def ffn_modules(model: nn.Module) -> list[GatedFFN]:
    """Each layer's gated FFN (architecture.gated_ffns); a clear error for models without one."""
    return gated_ffns(model)


def layer_span(n_layers: int, name: str) -> range:
    """bottom / middle / top third of the layers, or all of them."""
    first, second = n_layers // 3, (2 * n_layers) // 3
    spans = {"bottom": range(0, first), "middle": range(first, second), "top": range(second, n_layers), "all": range(n_layers)}
    if name not in spans:
        raise ValueError(f"layer range {name!r}: allowed: {', '.join(LAYER_RANGES)}")
    return spans[name]


def neurons_by_layer(pairs: Iterable[Sequence[int]], device: torch.device | str = "cpu") -> dict[int, torch.Tensor]:
    """[[layer, index], ...] -> {layer: sorted LongTensor of indices}."""
    grouped: dict[int, list[int]] = {}
    for layer, index in pairs:
        grouped.setdefault(int(layer), []).append(int(index))
    return {layer: torch.tensor(sorted(idx), dtype=torch.long, device=device) for layer, idx in sorted(grouped.items())}


def restrict_layers(neurons: Mapping[int, torch.Tensor], layers: range) -> dict[int, torch.Tensor]:
    """Only the neurons of layers in `layers` (masking a set in one layer range)."""
    return {layer: idx for layer, idx in neurons.items() if layer in layers and idx.numel()}


@contextmanager
def _down_proj_input_hooks(
    model: nn.Module, neurons: Mapping[int, torch.Tensor], edit: Callable[[torch.Tensor, torch.Tensor], None]
) -> Iterator[None]:
    """`edit(inputs, index)` on each listed layer's down_proj input while the context is open
    (model/hooks.py's down_proj input site)."""
    mlps = ffn_modules(model)
    hooks = {}
    for layer, index in neurons.items():
        down = at_layer(mlps, layer).down_proj
        if index.numel() == 0:
            continue

        def hook(inputs: torch.Tensor, index: torch.Tensor = index.to(down.weight.device)) -> None:
            # In place: the input is a fresh product tensor consumed only by down_proj.
            edit(inputs, index)

        hooks[layer] = hook
    with on_down_proj_input(mlps, hooks):
        yield


@contextmanager
def mask_neurons(model: nn.Module, neurons: Mapping[int, torch.Tensor]) -> Iterator[None]:
    """Zero the given down_proj inputs on every token while the context is open."""
    with _down_proj_input_hooks(model, neurons, lambda inputs, index: inputs.index_fill_(-1, index, 0.0)):
        yield


@contextmanager
def scale_neurons(model: nn.Module, neurons: Mapping[int, torch.Tensor], alpha: float) -> Iterator[None]:
    """Multiply the given down_proj inputs by `alpha` on every token while the context is open
    (steering: alpha 0 is `mask_neurons`, 1 changes nothing, > 1 amplifies)."""

    def scale(inputs: torch.Tensor, index: torch.Tensor) -> None:
        inputs.index_copy_(-1, index, inputs.index_select(-1, index) * alpha)

    with _down_proj_input_hooks(model, neurons, scale):
        yield


@contextmanager
def scale_neurons_per_row(model: nn.Module, rows: Sequence[tuple[Mapping[int, torch.Tensor], float]]) -> Iterator[None]:
    """`scale_neurons` with one (neurons, alpha) per batch row: row b's down_proj inputs `rows[b][0]`
    are multiplied by `rows[b][1]`, so several steering conditions share one batch. The batch must
    keep these rows in this order while the context is open (generation does)."""
    mlps = ffn_modules(model)
    multipliers: dict[int, torch.Tensor] = {}
    for b, (neurons, alpha) in enumerate(rows):
        for layer, index in neurons.items():
            down = at_layer(mlps, layer).down_proj
            if index.numel() == 0 or alpha == 1.0:
                continue
            if layer not in multipliers:
                multipliers[layer] = torch.ones((len(rows), 1, down.in_features), dtype=down.weight.dtype, device=down.weight.device)
            multipliers[layer][b, 0, index.to(down.weight.device)] = alpha
    def scale_rows(inputs: torch.Tensor, multiplier: torch.Tensor) -> None:
        if inputs.shape[0] != multiplier.shape[0]:
            raise ValueError(f"scale_neurons_per_row: a batch of {inputs.shape[0]} rows, {multiplier.shape[0]} were given")
        inputs.mul_(multiplier)  # x * 1.0 is x exactly: rows and neurons not steered are unchanged

    hooks = {layer: (lambda inputs, multiplier=multiplier: scale_rows(inputs, multiplier)) for layer, multiplier in multipliers.items()}
    with on_down_proj_input(mlps, hooks):
        yield
