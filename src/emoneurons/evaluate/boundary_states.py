"""The hidden states mask-eval's layer reuse keeps (evaluate/classify.py): for every batch of the
test split, the state entering each boundary layer, made by the unmodified run and read back when
a masked run starts at that layer.

On a GPU they are kept in pinned host memory and copied back one batch at a time, so the device
holds only the batch in flight: at the 8B preset (presets/paper-8b-1gpu.yaml with eval.method:
score; batch 32 x at most 1024 tokens x hidden 4096 x 2 bytes) at most 256 MiB per boundary,
where keeping them on the device took (test tokens) x 8 KiB per boundary, ~30 GB at 15k test
dialogues. The host pays that instead, one chunk of the test dialogues at a time (chunking.py: at
most 256 MiB; docs/DISTRIBUTED.md, "mask-eval's memory on a GPU"). Both
copies are asynchronous on the current stream, whose order makes them safe; on the CPU the states
stay where they are."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor


def offload_target(device: torch.device) -> torch.device | None:
    """Where states made on `device` are kept: the host for a CUDA device, None (in place) otherwise."""
    return torch.device("cpu") if device.type == "cuda" else None


def _kept(state: Tensor) -> Tensor:
    target = offload_target(state.device)
    if target is None:
        return state
    if state.device.type == "cuda" and target.type == "cpu":
        host = torch.empty(state.shape, dtype=state.dtype, device="cpu", pin_memory=True)
        return host.copy_(state, non_blocking=True)  # read back only by a later copy on the same stream
    return state.to(target, copy=True)


class BoundaryStates(Mapping[int, Tensor]):
    """{layer: the state entering it}, stored where offload_target says; each read gives the
    state back on the device it was made on."""

    def __init__(self, states: Mapping[int, Tensor]) -> None:
        self._stored = {layer: (_kept(state), state.device) for layer, state in states.items()}

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
