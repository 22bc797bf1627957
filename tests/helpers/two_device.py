"""A tiny Llama whose decoder layers sit on two devices that torch keeps apart: the embeddings and
the first layers on `cpu`, the later layers, the final norm and the lm_head on `meta` (shapes
without values). Each meta layer's inputs are moved to it by a forward pre-hook, as accelerate's
device-map hooks move them between GPUs. Inside `strict_devices()`, any torch call that meets
tensors of both devices raises "Expected all tensors on the same device" (torch itself lets some
meta/cpu mixes through, e.g. `meta.mul_(cpu)`), so code that makes a tensor on `lm.device` and
uses it with a later layer's hidden states fails here as it would across two GPUs.

Values exist only on the cpu layers: a test checks those against an all-cpu copy of the same
model and checks that the meta part ran (shapes, devices)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from emoneurons.model.loading import LoadedModel

# Calls that legitimately take tensors of two devices: explicit moves and copies.
_MOVES = {"to", "copy_", "cpu", "cuda", "__get__", "__set__", "_has_compatible_shallow_copy_type", "set_"}


class _StrictDevices(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name not in _MOVES:
            # 0-dim cpu tensors mix with any device in torch (scalars): they are not a defect.
            devices = {t.device.type for t in tree_flatten((args, kwargs))[0]
                       if isinstance(t, torch.Tensor) and not (t.dim() == 0 and t.device.type == "cpu")}
            if len(devices) > 1:
                raise RuntimeError(f"Expected all tensors on the same device, found {sorted(devices)} in {name}")
        return func(*args, **kwargs)


@contextmanager
def strict_devices() -> Iterator[None]:
    with _StrictDevices():
        yield


def _to_meta(value):
    return tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t, value)


def split_over_cpu_and_meta(lm: LoadedModel, cpu_layers: int) -> LoadedModel:
    """A deep copy of `lm` with decoder layers [cpu_layers:], the final norm and the lm_head on
    `meta`; the rest (embeddings, rotary tables, the first layers) stays on cpu."""
    model = copy.deepcopy(lm.model)
    if model.config.tie_word_embeddings:  # a tied lm_head would pull the embeddings onto meta
        model.lm_head.weight = nn.Parameter(model.lm_head.weight.detach().clone())
    moved = [*model.model.layers[cpu_layers:], model.model.norm, model.lm_head]
    for module in moved:
        module.to("meta")
        module.register_forward_pre_hook(lambda mod, args, kwargs: (_to_meta(args), _to_meta(kwargs)), with_kwargs=True)
    return LoadedModel(model=model, tokenizer=lm.tokenizer, name=f"{lm.name} (layers {cpu_layers}+ on meta)")
