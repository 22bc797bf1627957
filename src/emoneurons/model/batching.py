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

import numpy as np
import torch
from torch import Tensor


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted, stable), so padding stays small."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@dataclass(frozen=True)
class BatchPlan:
    """Batches as consecutive runs of one order of the sequences: batch b is
    order[starts[b]:starts[b + 1]]. Two int64 arrays, ~16 bytes a sequence, where lists of Python
    ints hold ~70 and their sort held ~180 more while it ran (count plans 273k train dialogues)."""

    order: np.ndarray  # int64 [n]: sequence indices, longest first
    starts: np.ndarray  # int64 [batches + 1]: where each batch starts in `order`, then n

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, b: int) -> np.ndarray:
        return self.order[self.starts[b] : self.starts[b + 1]]

    def members(self, batches: Sequence[int]) -> np.ndarray:
        """The indices in `batches` (batch numbers), batch after batch."""
        if not len(batches):
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([self[b] for b in batches])


def length_batch_plan(lengths: Sequence[int] | np.ndarray, batch_size: int, max_padding: float = 0.1) -> BatchPlan:
    """Indices sorted by length (longest first, so memory problems show at once; ties in index
    order), cut into batches of at most batch_size whose padding stays within max_padding of the
    tokens each processes: a batch takes the next sequence while its padding would stay within."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    ordered = lengths[order]
    starts = np.empty(len(order) + 1, dtype=np.int64)
    sizes = np.arange(1, batch_size + 1)  # a batch's size with each next member in it
    batches = start = 0
    while start < len(order):
        starts[batches] = start
        batches += 1
        window = ordered[start : start + batch_size]
        processed = window[0] * sizes[: len(window)]  # tokens the batch would process: width x size
        over = np.flatnonzero(processed - np.cumsum(window) > max_padding * processed)
        start += max(int(over[0]) if len(over) else len(window), 1)
    starts[batches] = len(order)
    return BatchPlan(order, starts[: batches + 1].copy())


def length_batches(lengths: Sequence[int], batch_size: int, max_padding: float = 0.1) -> list[list[int]]:
    """length_batch_plan's batches as lists of indices (for a piece of dialogues; count, over a
    whole split, keeps the plan)."""
    plan = length_batch_plan(lengths, batch_size, max_padding)
    return [plan[b].tolist() for b in range(len(plan))]


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
