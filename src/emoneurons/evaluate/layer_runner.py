"""Running a model's decoder layers directly, for the masked classifier's layer reuse.

The decoder layers are called one by one (the model adapter's `decoder_layers`), with a small
key/value store standing in for a transformers Cache (attention only calls `cache.update`), each
layer's rotary embeddings (model/architecture.py: Gemma 3 has local and global ones) and either
an explicit additive 4D mask, which eager and sdpa attention both take, or no mask and the
shared-prefix attention (evaluate/shared_prefix_attention.py), switched on only while `run_layers`
runs (model/compat.py: how a layer takes its cache and its attention function differs between
transformers versions). A run can start at any layer from kept hidden states, keep the states
entering chosen layers, and run each FFN on chosen positions only. Layers may sit on several
devices (a device map): what the engine makes goes to each layer's device where it meets it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor

from emoneurons.evaluate.shared_prefix_attention import REGISTERED, SHARED_PREFIX_ATTENTION, SHARED_PREFIX_CACHE
from emoneurons.model.architecture import decoder_layers, model_adapter
from emoneurons.model.compat import attention_implementation, cache_keyword, layer_output
from emoneurons.model.hooks import around_mlp
from emoneurons.model.loading import LoadedModel


class KVStore:
    """Stands in for a transformers Cache inside attention: each layer sees `past` keys/values
    (batch 1 is broadcast) before its own; its own are kept in `new` (and appended when decoding).
    `shared_prefix`: per layer, the prompt prefix's keys/values [1, Hkv, P, D] that
    `shared_prefix_attention` merges in (it asks `shared_prefix_of(layer)`).

    The store reaches each layer and its attention function as one keyword object, and it must stay
    opaque to accelerate's device hooks (`model.device: auto`), which copy every tensor they find in
    a layer call's arguments (recursing into tuples, lists, mappings and anything with `.to`) to the
    layer's device on every call: so no `.to`, no Mapping. Each layer takes only its own layer's
    keys/values out of it, on its own device (where that layer computed them)."""

    def __init__(self, past: Mapping[int, tuple[Tensor, Tensor]], append: bool = False,
                 shared_prefix: Mapping[int, tuple[Tensor, Tensor]] | None = None) -> None:
        self.past = dict(past)
        self.append = append
        self.shared_prefix = dict(shared_prefix or {})
        self.new: dict[int, tuple[Tensor, Tensor]] = {}

    def update(self, key: Tensor, value: Tensor, layer_idx: int, *args, **kwargs) -> tuple[Tensor, Tensor]:
        self.new[layer_idx] = (key, value)
        if layer_idx in self.past:
            past_key, past_value = self.past[layer_idx]
            batch = key.shape[0]
            key = torch.cat([past_key.expand(batch, -1, -1, -1), key], dim=2)
            value = torch.cat([past_value.expand(batch, -1, -1, -1), value], dim=2)
        if self.append:
            self.past[layer_idx] = (key, value)
        return key, value

    def shared_prefix_of(self, layer_idx: int) -> tuple[Tensor, Tensor] | None:
        """Layer `layer_idx`'s prefix keys/values, or None (no prefix)."""
        return self.shared_prefix.get(layer_idx)

    # Attention code of some models asks these of a cache; the store never slides or compiles.
    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.past[layer_idx][0].shape[2] if layer_idx in self.past else 0


def shared_prefix_available(lm: LoadedModel) -> bool:
    """Whether `run_layers` can take the shared-prefix attention for this model: transformers new
    enough, and plain softmax attention (no soft-capping of the attention logits, as Gemma 2 has).
    On any device: the attention kernel follows it (shared_prefix_attention.kernel_for)."""
    return REGISTERED and model_adapter(lm.model).attention_softcap is None


@contextmanager
def _ffn_rows(lm: LoadedModel, rows: Mapping[int, Tensor], devices: list[torch.device]) -> Iterator[None]:
    """While open, layer l's FFN runs on the flat positions `rows[l]` only (layers not in `rows`:
    on all); the other positions get a zero FFN output, for positions nothing reads: padding, and
    after the last layer everything but the positions whose logits are formed. Each layer's index
    is put on that layer's device (`devices`) once."""
    shapes: list[torch.Size] = []

    def hooks(index: Tensor):
        def pack(x: Tensor) -> Tensor:
            shapes.append(x.shape)
            return x.reshape(-1, x.shape[-1]).index_select(0, index)

        def unpack(out: Tensor) -> Tensor:
            shape = shapes.pop()
            full = out.new_zeros(shape[:-1].numel(), out.shape[-1])
            return full.index_copy_(0, index, out).view(*shape[:-1], out.shape[-1])

        return pack, unpack

    on = _OnDevices()
    with around_mlp(decoder_layers(lm.model), {layer: hooks(on(index, devices[layer])) for layer, index in rows.items()}):
        yield


class _OnDevices:
    """A tensor (or nested tuple of tensors) on a given device, copied at most once per device:
    the mask, positions and rotary embeddings that every layer gets, on the layers' devices."""

    def __init__(self) -> None:
        self._copies: dict[tuple[int, torch.device], object] = {}

    def __call__(self, value, device: torch.device):
        if value is None:
            return None
        if isinstance(value, (tuple, list)):
            return type(value)(self(part, device) for part in value)
        if value.device == device:
            return value
        key = (id(value), device)
        if key not in self._copies:
            self._copies[key] = (value, value.to(device))  # the source is kept alive with its id
        return self._copies[key][1]


def additive_mask(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """[B, q, k] booleans (True = may attend) -> [B, 1, q, k] additive mask (0 or dtype min)."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)


def windowed_mask(mask: Tensor, positions: Tensor, key_positions: Tensor, window: int) -> Tensor:
    """An additive mask [B|1, 1, q, k] narrowed to a sliding window: query at `positions` [B|1, q]
    loses every key at `key_positions` [B|1, k] with query - key >= `window` (the model's own
    sliding_window_overlay; causality stays the mask's)."""
    outside = (positions.unsqueeze(-1) - key_positions.unsqueeze(-2) >= window).unsqueeze(1)
    return torch.where(outside.to(mask.device), torch.finfo(mask.dtype).min, mask)


def run_layers(
    lm: LoadedModel,
    hidden: Tensor,
    positions: Tensor,
    mask: Tensor | None,
    layers: range,
    past: Mapping[int, tuple[Tensor, Tensor]] | None = None,
    keep: Iterable[int] = (),
    append: bool = False,
    shared: Mapping[int, tuple[Tensor, Tensor]] | None = None,
    real: Tensor | None = None,
    read: Tensor | None = None,
    key_positions: Tensor | None = None,
) -> tuple[Tensor, KVStore, dict[int, Tensor]]:
    """Run decoder layers `layers` on `hidden` [B, T, H] at `positions` [B|1, T] with `mask`
    [B|1, 1, T, past+T]; return the output, the key/value store, and the hidden states entering
    each layer in `keep`. `mask` None (with no `past`): `shared_prefix_attention`, each row
    attending all of `shared`'s keys/values (batch 1; none: no prefix) and its own tokens causally.
    `real`: the flat positions of the real tokens of right-padded rows (`real_token_index`); the
    FFNs skip the rest. `read`: the flat positions whose output is read after the model's last
    layer (empty: none, only keys/values are wanted); that layer's FFN skips the rest, which
    changes no key or value (a layer's keys/values come from its input). `key_positions` [B|1, k]:
    the position of each of `mask`'s keys (None: 0..k-1, past then own, as the prefix and dialogue
    passes lay them out), from which a sliding-window layer's mask is narrowed to its window; with
    no mask, `shared_prefix_attention` narrows it itself."""
    blocks = decoder_layers(lm.model)
    adapter = model_adapter(lm.model)
    devices = adapter.layer_devices()
    store = KVStore(past or {}, append=append, shared_prefix=shared if mask is None else None)
    rotary = adapter.position_embeddings(hidden, positions)
    on = _OnDevices()  # every tensor the engine made, on the device of the layer it meets
    kept: dict[int, Tensor] = {}
    keep = set(keep)
    # shared_prefix_attention finds the prefix in the store (one object, which device hooks leave alone).
    extra = {SHARED_PREFIX_CACHE: store} if mask is None else {}
    layer_masks = {}  # one mask per window size (Gemma 3: its local layers'), made once per call
    windows = adapter.layer_windows
    if mask is not None:
        if key_positions is None:
            key_positions = torch.arange(mask.shape[-1], device=mask.device).unsqueeze(0)
        for window in {windows[index] for index in layers}:
            layer_masks[window] = mask if window is None else windowed_mask(mask, positions.to(mask.device),
                                                                            key_positions.to(mask.device), window)
    rows = {layer: real for layer in layers} if real is not None else {}
    if read is not None and len(layers) and layers.stop == len(blocks):
        rows[layers.stop - 1] = read
    with attention_implementation(lm.model.config, SHARED_PREFIX_ATTENTION if mask is None else None), _ffn_rows(lm, rows, devices):
        for index in layers:
            if index in keep:
                kept[index] = hidden
            block, device = blocks[index], devices[index]
            hidden = layer_output(block(hidden.to(device), attention_mask=on(layer_masks.get(windows[index]), device), position_ids=on(positions, device),
                                        position_embeddings=on(rotary[index], device), **{cache_keyword(block): store}, **extra))
    if len(layers) and layers.stop in keep:
        kept[layers.stop] = hidden
    return hidden, store, kept


def prefixed_past(prefix_kv: Mapping[int, tuple[Tensor, Tensor]], dialogue_kv: Mapping[int, tuple[Tensor, Tensor]],
                  layers: range, batch_size: int) -> dict[int, tuple[Tensor, Tensor]]:
    """Per layer, the prefix's keys/values (batch 1, broadcast) followed by the rows' own."""
    past = {}
    for layer in layers:
        (pk, pv), (dk, dv) = prefix_kv[layer], dialogue_kv[layer]
        past[layer] = (torch.cat([pk.expand(batch_size, -1, -1, -1), dk], 2), torch.cat([pv.expand(batch_size, -1, -1, -1), dv], 2))
    return past


def key_validity(prefix_length: int, lengths: Tensor, width: int) -> Tensor:
    """[B, P + T]: prefix keys always, a right-padded row's own keys up to its length."""
    device = lengths.device
    own = torch.arange(width, device=device).unsqueeze(0) < lengths.unsqueeze(1)
    return torch.cat([torch.ones(len(lengths), prefix_length, dtype=torch.bool, device=device), own], dim=1)


def last_logprobs(lm: LoadedModel, hidden: Tensor) -> Tensor:
    """Final norm and lm_head (and the family's logit soft-capping) on [B, H] (or [B, T, H]) hidden
    states -> float32 log-probabilities."""
    return torch.log_softmax(model_adapter(lm.model).logits(hidden).float(), dim=-1)
