"""Attention over a shared prompt prefix and each row's own tokens, without copying the prefix.

A dialogue batch attends to the prompt prefix's keys/values (the same for every row) and then
causally to its rows' own tokens. `shared_prefix_attention` does the two as separate attention
calls and merges them by their log-sum-exps: the prefix once for all rows of a batch and all query
heads of a key/value head (one long query), the rows' own tokens causally in a second; no mask, no
per-row copy of the prefix's keys/values, no GQA repeat of the prefix. It is registered with
transformers' AttentionInterface under SHARED_PREFIX_ATTENTION and switched on only while the
engine's prefix and dialogue passes run (evaluate/layer_runner.py).

The merge needs each call's log-sum-exp, which torch's public scaled_dot_product_attention does not
return, so the kernel is chosen by device (`kernel_for`):
- `cpu_flash`: aten `_scaled_dot_product_flash_attention_for_cpu` (the default run's path);
- `cuda_efficient`: aten `_scaled_dot_product_efficient_attention` with compute_log_sumexp (its
  log-sum-exp comes padded to a multiple of 32 queries and is cut back); written, not yet run on
  a GPU (docs/DISTRIBUTED.md);
- `math`: q·kᵀ, masked, logsumexp, softmax·v in float32, for any other device (and for tests,
  through `forced_kernel`).
Right padding needs no mask: a real token never attends to a pad that follows it.
A sliding-window layer (its attention module passes `sliding_window`: Gemma 3's local layers,
Mistral, Qwen2 with use_sliding_window) gets an additive mask per call only where the window binds:
the dialogue token at position P + i sees prefix key k iff P + i - k < window and its own key j iff
0 <= i - j < window, exactly transformers' sliding_window_overlay on the full sequence. Keys outside
are masked with the dtype's minimum, not -inf: a query whose whole prefix lies outside its window
gets a finite, negligible log-sum-exp, so the merge gives the prefix part weight 0 and no NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, Protocol

import torch
from torch import Tensor

from emoneurons.model.compat import register_attention

SHARED_PREFIX_ATTENTION = "emoneurons_shared_prefix"
# The keyword by which the engine's key/value store (layer_runner.KVStore) reaches this function
# through a layer's **kwargs; the function asks it for the calling layer's prefix only.
SHARED_PREFIX_CACHE = "shared_prefix_cache"

Kernel = Literal["cpu_flash", "cuda_efficient", "math"]
KERNELS: tuple[Kernel, ...] = ("cpu_flash", "cuda_efficient", "math")
_forced: list[Kernel] = []  # set by `forced_kernel` (tests, benchmarks)
_efficient_failed: list[str] = []  # the CUDA kernel refused some input once: math from then on


def _flash_cpu():
    """torch's CPU flash attention that also returns the log-sum-exp (None where torch lacks it)."""
    return getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def _efficient():
    """torch's memory-efficient attention (CUDA), which returns the log-sum-exp when asked."""
    return getattr(torch.ops.aten, "_scaled_dot_product_efficient_attention", None)


def kernel_for(device: torch.device) -> Kernel:
    """The log-sum-exp attention kernel for tensors on `device`."""
    if _forced:
        return _forced[-1]
    if device.type == "cpu" and _flash_cpu() is not None:
        return "cpu_flash"
    if device.type == "cuda" and _efficient() is not None and not _efficient_failed:
        return "cuda_efficient"
    return "math"


@contextmanager
def forced_kernel(kernel: Kernel) -> Iterator[None]:
    """While open, every call takes `kernel` whatever the device."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel {kernel!r}: allowed: {', '.join(KERNELS)}")
    _forced.append(kernel)
    try:
        yield
    finally:
        _forced.pop()


def math_attention_with_lse(query: Tensor, key: Tensor, value: Tensor, *, causal: bool, scale: float,
                            bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The plain formula, in float32: softmax(q·kᵀ·scale + bias) v and the log-sum-exp of each query's scores."""
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    if bias is not None:
        scores = scores + bias.float()
    if causal:  # query i sees keys 0..i (as many queries as keys)
        t, s = scores.shape[-2:]
        scores = scores.masked_fill(torch.ones(t, s, dtype=torch.bool, device=scores.device).triu(1), float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.matmul(torch.exp(scores - lse.unsqueeze(-1)), value.float())
    return out.to(query.dtype), lse


def attention_with_lse(query: Tensor, key: Tensor, value: Tensor, *, causal: bool, scale: float,
                       kernel: Kernel | None = None, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Attention of `query` [B, H, T, D] over `key`/`value` [B, H, S, D] (as many heads; causal:
    S == T): output [B, H, T, D] and log-sum-exp [B, H, T] (float32), by `kernel` (None: `kernel_for`).
    `bias`: an additive mask broadcastable to [B, H, T, S] (a sliding window), or None."""
    kernel = kernel or kernel_for(query.device)
    if kernel == "cpu_flash":
        out, lse = _flash_cpu()(query, key, value, 0.0, causal, attn_mask=bias, scale=scale)[:2]
        return out, lse
    if kernel == "cuda_efficient" and not _efficient_failed:
        try:
            if bias is not None:  # this kernel takes a bias of the full shape only
                bias = bias.to(query.dtype).expand(query.shape[0], query.shape[1], query.shape[2], key.shape[2])
            out, lse = _efficient()(query, key, value, bias, True, 0.0, causal, scale=scale)[:2]
            return out, lse[..., : query.shape[2]]
        except torch.OutOfMemoryError:
            raise  # a batch too large for the device, not a kernel refusal: the math kernel needs more memory still
        except RuntimeError as error:  # e.g. a head size or dtype this build's kernel does not take
            _efficient_failed.append(str(error).splitlines()[0] if str(error) else type(error).__name__)
            warnings.warn(f"shared-prefix attention: the CUDA efficient kernel refused ({_efficient_failed[-1]}); "
                          "using the math kernel", stacklevel=2)
    return math_attention_with_lse(query, key, value, causal=causal, scale=scale, bias=bias)


def window_bias(query_positions: Tensor, key_positions: Tensor, window: int, dtype: torch.dtype) -> Tensor:
    """[T, S] additive mask: 0 where 0 <= query position - key position < `window` (a causal
    sliding window), else the dtype's minimum."""
    distance = query_positions.unsqueeze(1) - key_positions.unsqueeze(0)
    outside = (distance >= window) | (distance < 0)
    return torch.zeros(outside.shape, dtype=dtype, device=outside.device).masked_fill_(outside, torch.finfo(dtype).min)


class PrefixSource(Protocol):
    """What the attention asks of the engine's key/value store (layer_runner.KVStore)."""

    def shared_prefix_of(self, layer_idx: int) -> tuple[Tensor, Tensor] | None: ...


def merge_by_lse(out: Tensor, lse: Tensor, out_p: Tensor, lse_p: Tensor) -> Tensor:
    """Attention over two key sets from each one's output [.., T, D] and log-sum-exp [.., T]: the
    outputs weighted by their share of the total softmax mass, in float32 (bf16 weights and a bf16
    sum would round three times before the one rounding to the output's dtype)."""
    total = torch.logaddexp(lse.float(), lse_p.float())
    mixed = out.float() * torch.exp(lse.float() - total).unsqueeze(-1) + out_p.float() * torch.exp(lse_p.float() - total).unsqueeze(-1)
    return mixed.to(out.dtype)


def shared_prefix_attention(module, query: Tensor, key: Tensor, value: Tensor, attention_mask, scaling: float | None = None,
                            dropout: float = 0.0, shared_prefix_cache: PrefixSource | None = None, **kwargs):
    """Attention of `query` [B, H, T, D] over all keys of the layer's shared prefix ([1, Hkv, P, D],
    seen by every row, taken from `shared_prefix_cache` for `module.layer_idx`; none when absent)
    and then causally over the rows' own `key`/`value` [B, Hkv, T, D]; `attention_mask` is ignored
    (right padding needs none: a real token never attends to a later pad). `sliding_window` (passed
    by a local layer's attention module): each query sees only the keys within its window, the rows'
    tokens sitting at positions P..P+T-1 after the prefix's 0..P-1. Returns [B, T, H, D] like
    transformers' attention functions."""
    b, h, t, d = query.shape
    kv_heads = key.shape[1]
    group = h // kv_heads
    scale = d**-0.5 if scaling is None else scaling
    kernel = kernel_for(query.device)
    window = kwargs.get("sliding_window")
    own_positions = torch.arange(t, device=query.device)
    if group > 1:  # the own part is small: repeat its keys/values per query head
        key = key[:, :, None].expand(b, kv_heads, group, t, d).reshape(b, h, t, d)
        value = value[:, :, None].expand(b, kv_heads, group, t, d).reshape(b, h, t, d)
    own_bias = window_bias(own_positions, own_positions, window, query.dtype) if window is not None and t > window else None
    # The bias carries causality too: the kernels take a mask or is_causal, not both.
    out, lse = attention_with_lse(query, key, value, causal=own_bias is None, scale=scale, kernel=kernel, bias=own_bias)
    prefix = shared_prefix_cache.shared_prefix_of(module.layer_idx) if shared_prefix_cache is not None else None
    if prefix is not None:
        # The layer computed its prefix keys/values on its own device: this copies nothing.
        prefix_key, prefix_value = (part.to(query.device) for part in prefix)
        p = prefix_key.shape[2]
        prefix_bias = None
        if window is not None and p + t - 1 >= window:  # the last query's window starts after key 0
            per_query = window_bias(p + own_positions, torch.arange(p, device=query.device), window, query.dtype)
            prefix_bias = per_query.expand(b * group, t, p).reshape(1, 1, b * group * t, p)
        # Every row and every query head of a key/value head sees the same prefix keys: one long query.
        folded = query.view(b, kv_heads, group, t, d).transpose(0, 1).reshape(1, kv_heads, b * group * t, d)
        out_p, lse_p = attention_with_lse(folded, prefix_key, prefix_value, causal=False, scale=scale, kernel=kernel,
                                          bias=prefix_bias)
        out_p = out_p.view(kv_heads, b, group, t, d).transpose(0, 1).reshape(b, h, t, d)
        lse_p = lse_p.view(kv_heads, b, group, t).transpose(0, 1).reshape(b, h, t)
        out = merge_by_lse(out, lse, out_p, lse_p)
    return out.transpose(1, 2).contiguous(), None


# False on a transformers without AttentionInterface: the concatenating path only.
REGISTERED = register_attention(SHARED_PREFIX_ATTENTION, shared_prefix_attention)
