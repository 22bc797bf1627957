"""Batching token sequences of different lengths: which sequences share a batch (length
bucketing), and the padded id tensor with its mask of real tokens.

Both fast paths use it: counting (neurons/counting.py, neurons/top_activations.py: longest first,
a padding budget, left or right padding as the tokenizer says) and the masked classifier
(evaluate/classify.py: shortest first, fixed batch size, always right padding). Core layer: it
imports no other part of the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted, stable), so padding stays small."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def length_batches(lengths: Sequence[int], batch_size: int, max_padding: float = 0.1) -> list[list[int]]:
    """Indices sorted by length (longest first, so memory problems show at once), cut into batches
    of at most batch_size whose padding stays within max_padding of the tokens each processes."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    real = 0
    for i in order:
        if batches and len(batches[-1]) < batch_size:
            width = lengths[batches[-1][0]]  # the longest, first in the batch
            processed = width * (len(batches[-1]) + 1)
            if processed - (real + lengths[i]) <= max_padding * processed:
                batches[-1].append(i)
                real += lengths[i]
                continue
        batches.append([i])
        real = lengths[i]
    return batches


@dataclass(frozen=True)
class Padded:
    """Sequences padded to the longest: ids [B, W], valid [B, W] (True at real tokens), and each
    row's offset (where its first real token sits: 0 with right padding)."""

    ids: Tensor
    valid: Tensor
    offsets: list[int]

    @property
    def lengths(self) -> list[int]:
        return [int(n) for n in self.valid.sum(1).tolist()]


def padded_ids(rows: Sequence[Sequence[int]], pad_id: int, padding_side: str = "right",
               device: torch.device | str | None = None) -> Padded:
    """`rows` padded with `pad_id` on `padding_side` (right or left) into one long tensor on `device`."""
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side {padding_side!r}: allowed: right, left")
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    valid = torch.zeros((len(rows), width), dtype=torch.bool, device=device)
    offsets = [width - len(row) if padding_side == "left" else 0 for row in rows]
    for b, (row, offset) in enumerate(zip(rows, offsets)):
        ids[b, offset : offset + len(row)] = torch.tensor(row, dtype=torch.long, device=device)
        valid[b, offset : offset + len(row)] = True
    return Padded(ids, valid, offsets)


def real_token_index(valid: Tensor) -> Tensor | None:
    """The flat positions of the real tokens of `valid` [B, T] (False at padding); None without
    padding. Computed once per batch when the batch is built: nonzero() waits for the device."""
    return None if bool(valid.all()) else valid.flatten().nonzero().squeeze(1)
