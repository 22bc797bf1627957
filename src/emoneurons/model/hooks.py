"""The model's hook sites in one place: a context manager per site, each hook registered on the
adapter's modules (architecture.GatedFFN, the decoder blocks) and removed on exit, however the
block exits; the layer bounds are checked once here, before anything is registered.

Sites (what a hook sees):
- `on_down_proj_input`: a layer's down_proj input, act_fn(gate) * up, the product (counting's
  `activation: product`; masking and steering edit it in place, so down_proj reads the edit);
- `on_gate_output`: a layer's gate values (the gate half of a fused gate_up_proj), read only
  (counting's `activation: gate`, the cards' top activations);
- `around_mlp`: a decoder block's whole MLP, input replaced before and output after (the engine
  runs FFNs on chosen positions only);
- `on_block_output`: a decoder block's output, the residual stream after the block (before the
  final norm for the last block), read only (the emotion directions).

neurons/reference.py, the method on one page, keeps its own plain hooks so that it shares no code
with the fast paths it checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from torch import Tensor, nn

from emoneurons.errors import EmoneuronsError
from emoneurons.model.architecture import GatedFFN

Module = TypeVar("Module")


class LayerOutsideModelError(EmoneuronsError, ValueError):
    """Neurons at a layer the model does not have (selected on another model): one line naming the
    layer and the model's range."""


def at_layer(per_layer: Sequence[Module], layer: int) -> Module:
    """Layer `layer`'s module (FFN or decoder block); a one-line error for a layer the model does
    not have (a negative index would silently hook a layer from the end)."""
    if not 0 <= layer < len(per_layer):
        raise LayerOutsideModelError(f"layer {layer} is outside the model (0..{len(per_layer) - 1})")
    return per_layer[layer]


@contextmanager
def _removed_on_exit(handles: list) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def on_down_proj_input(ffns: Sequence[GatedFFN], hooks: Mapping[int, Callable[[Tensor], Any]]) -> Iterator[None]:
    """While open, `hooks[layer](x)` is called with layer's down_proj input x before down_proj
    runs (an in-place edit of x is what down_proj reads; the return value is ignored)."""
    downs = [(at_layer(ffns, layer).down_proj, hook) for layer, hook in hooks.items()]
    handles = []
    with _removed_on_exit(handles):
        for down, hook in downs:
            def pre(module: nn.Module, args: tuple, hook: Callable[[Tensor], Any] = hook) -> None:
                hook(args[0])

            handles.append(down.register_forward_pre_hook(pre))
        yield


@contextmanager
def on_gate_output(ffns: Sequence[GatedFFN], hooks: Mapping[int, Callable[[Tensor], Any]]) -> Iterator[None]:
    """While open, `hooks[layer](gate)` is called with layer's gate values after its gate runs
    ([..., neurons]; `GatedFFN.gate_of` takes the gate half of a fused gate_up_proj)."""
    sites = [(at_layer(ffns, layer), hook) for layer, hook in hooks.items()]
    handles = []
    with _removed_on_exit(handles):
        for ffn, hook in sites:
            def post(module: nn.Module, args: tuple, output: Tensor, ffn: GatedFFN = ffn,
                     hook: Callable[[Tensor], Any] = hook) -> None:
                hook(ffn.gate_of(output))

            handles.append(ffn.gate_source.register_forward_hook(post))
        yield


@contextmanager
def around_mlp(blocks: Sequence[nn.Module], hooks: Mapping[int, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]]) -> Iterator[None]:
    """While open, block `layer`'s MLP gets `before(x)` instead of its input x and returns
    `after(out)` instead of its output (`hooks[layer] = (before, after)`)."""
    sites = [(at_layer(blocks, layer).mlp, before, after) for layer, (before, after) in hooks.items()]
    handles = []
    with _removed_on_exit(handles):
        for mlp, before, after in sites:
            def pre(module: nn.Module, args: tuple, before: Callable[[Tensor], Tensor] = before) -> tuple:
                return (before(args[0]),)

            def post(module: nn.Module, args: tuple, output: Tensor, after: Callable[[Tensor], Tensor] = after) -> Tensor:
                return after(output)

            handles += [mlp.register_forward_pre_hook(pre), mlp.register_forward_hook(post)]
        yield


def block_output(output: Any) -> Tensor:
    """The hidden states of a decoder block's output (a tensor, or a tuple led by it in older
    transformers versions)."""
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def on_block_output(blocks: Sequence[nn.Module], hooks: Mapping[int, Callable[[Tensor], Any]]) -> Iterator[None]:
    """While open, `hooks[layer](h)` is called with decoder block `layer`'s output h [..., hidden],
    the residual stream after the block (read only; the return value is ignored)."""
    sites = [(at_layer(blocks, layer), hook) for layer, hook in hooks.items()]
    handles = []
    with _removed_on_exit(handles):
        for block, hook in sites:
            def post(module: nn.Module, args: tuple, output: Any, hook: Callable[[Tensor], Any] = hook) -> None:
                hook(block_output(output))

            handles.append(block.register_forward_hook(post))
        yield
