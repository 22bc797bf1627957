"""The hidden states mask-eval's layer reuse keeps (evaluate/classify.py): for every batch of the
test split, the state entering each boundary layer, made by the unmodified run and read back when
a masked run starts at that layer.

On a GPU they are kept in pinned host memory and copied back one batch at a time, so the device
holds only the batch in flight: at the 8B preset (presets/paper-8b-1gpu.yaml with eval.method:
score; batch 32 x at most 1024 tokens x hidden 4096 x 2 bytes) at most 256 MiB per boundary,
where keeping them on the device took (test tokens) x 8 KiB per boundary, ~30 GB at 15k test
dialogues. The host pays that instead, one chunk of the test dialogues at a time (chunking.py: at
most 256 MiB; docs/DISTRIBUTED.md, "mask-eval's memory on a GPU"). Both
copies are asynchronous on the current stream, whose order makes them safe. On the CPU they are
copied into large blocks of their own (`StateBlocks`), packed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor


def offload_target(device: torch.device) -> torch.device | None:
    """Where states made on `device` are kept: the host for a CUDA device, None (in place) otherwise."""
    return torch.device("cpu") if device.type == "cuda" else None


# A block of `StateBlocks`: large enough that glibc always maps it apart from its heap (its dynamic
# M_MMAP_THRESHOLD tops out at 32 MiB) and unmaps it when freed. Pages not yet written hold no memory.
BLOCK_BYTES = 64 * 2**20
# Where each copy starts in its block, in bytes: aligned as the allocator aligns a tensor of its own.
ALIGN_BYTES = 64


class StateBlocks:
    """Copies of the states an unmodified run keeps on the CPU, packed one after another into large
    blocks. Kept in place, each batch's states are heap blocks left between that batch's freed
    activations, so the heap cannot reuse those gaps for the next batch's larger ones: the run's
    peak grew by about twice its states (bench/RESULTS.md, "mask-eval's parent"). Packed, it holds
    the states and one batch's activations."""

    def __init__(self, block_bytes: int = BLOCK_BYTES) -> None:
        self.block_bytes = block_bytes
        self._block: Tensor | None = None
        self._used = 0  # elements of the current block taken

    def store(self, state: Tensor) -> Tensor:
        """A copy of `state` (same shape, dtype and values) in a block."""
        n, size = state.numel(), state.element_size()
        start = -(-self._used * size // ALIGN_BYTES) * ALIGN_BYTES // size
        if self._block is None or self._block.dtype != state.dtype or start + n > self._block.numel():
            self._block = torch.empty(max(n, self.block_bytes // size), dtype=state.dtype)
            start = 0
        copy = self._block[start : start + n].view(state.shape)
        copy.copy_(state)
        self._used = start + n
        return copy


def _kept(state: Tensor, blocks: StateBlocks | None) -> Tensor:
    target = offload_target(state.device)
    if target is None:
        return blocks.store(state) if blocks is not None and state.device.type == "cpu" else state
    if state.device.type == "cuda" and target.type == "cpu":
        host = torch.empty(state.shape, dtype=state.dtype, device="cpu", pin_memory=True)
        return host.copy_(state, non_blocking=True)  # read back only by a later copy on the same stream
    return state.to(target, copy=True)


class BoundaryStates(Mapping[int, Tensor]):
    """{layer: the state entering it}, stored where offload_target says (on the CPU: in `blocks`
    when given); each read gives the state back on the device it was made on."""

    def __init__(self, states: Mapping[int, Tensor], blocks: StateBlocks | None = None) -> None:
        self._stored = {layer: (_kept(state, blocks), state.device) for layer, state in states.items()}

    def __getitem__(self, layer: int) -> Tensor:
        stored, device = self._stored[layer]
        return stored if stored.device == device else stored.to(device, non_blocking=True)

    def __iter__(self) -> Iterator[int]:
        return iter(self._stored)

    def __len__(self) -> int:
        return len(self._stored)

    def stored_devices(self) -> dict[int, torch.device]:
        return {layer: stored.device for layer, (stored, _) in self._stored.items()}

    def device_bytes(self) -> int:
        """Bytes of states held on the device they were made on (0 when all are offloaded)."""
        return sum(stored.numel() * stored.element_size() for stored, device in self._stored.values() if stored.device == device)
