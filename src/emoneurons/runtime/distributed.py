"""Data parallel over the processes that `accelerate launch` (or torchrun) starts: which share of
the work this process takes, exact sums of integer counts, results gathered on rank 0.

One process (plain `python stages/count.py`) is the world of size 1: every call here is then a
no-op, and nothing imports torch.distributed. Under a launcher, accelerate's PartialState sets up
the process group: gloo when the model runs on the CPU, nccl on GPUs.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emoneurons.params import ParamsError

if TYPE_CHECKING:  # torch is imported where a process group is used: plain runs stay cheap to start
    import torch

# Seconds a rank waits in a collective (the final sum, the gather, a barrier) before the process
# group gives up. torch's own default is 10 minutes for nccl: a rank that finished its share (or
# resumed with little left) is killed while the others still compute. Override in the environment.
PG_TIMEOUT_ENV = "EMONEURONS_PG_TIMEOUT_S"
DEFAULT_PG_TIMEOUT_S = 6 * 3600.0

# Set in the environment to run a stage under a launcher when it is started plainly (dvc repro):
# e.g. EMONEURONS_LAUNCH="accelerate launch --multi_gpu --num_processes 8".
LAUNCH_ENV = "EMONEURONS_LAUNCH"
# Set to a folder to have each rank write there what it took (record_shard): to check a launch's
# sharding (tests/unit/runtime/test_distributed.py does), or to see which rank took which dialogues.
SHARD_RECORD_ENV = "EMONEURONS_SHARD_RECORD"


def launched() -> bool:
    """True inside a process started by accelerate launch / torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def relaunch_if_requested(script: str, argv: list[str]) -> None:
    """Replace this process by `$EMONEURONS_LAUNCH script argv...` when that variable is set and
    this process is not already one of a launcher's; otherwise return."""
    command = os.environ.get(LAUNCH_ENV, "").strip()
    if not command or "LOCAL_RANK" in os.environ:
        return
    args = [*shlex.split(command), script, *argv]
    print(f"{LAUNCH_ENV}: {shlex.join(args)}", file=sys.stderr)
    sys.stderr.flush()
    os.execvp(args[0], args)


def shard(n: int, rank: int, world: int) -> list[int]:
    """The items of `range(n)` that `rank` of `world` takes: every world-th from its rank, so
    items sorted by cost (longest first) spread evenly. Empty for idle ranks (rank >= n)."""
    return list(range(rank, n, world))


@dataclass(frozen=True)
class Ranks:
    """This process's place among the launched ones (rank 0 of 1 when not launched)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> list[int]:
        return shard(n, self.rank, self.world)

    def model_device(self, device: str) -> str:
        """model.device for this process: each rank of a multi-GPU launch on its own card."""
        if self.world > 1 and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of `tensor` over all ranks (int64 stays exact), on tensor's device."""
        if self.world == 1:
            return tensor
        import torch
        import torch.distributed as dist

        # gloo reduces host tensors, nccl device tensors.
        where = torch.device("cpu") if self.backend == "gloo" else torch.device("cuda", self.local_rank)
        moved = tensor.to(where).contiguous()
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        return moved.to(tensor.device)

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's `value` (picklable), in rank order, on rank 0; None on the others."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world if self.main else None
        dist.gather_object(value, out, dst=0)
        return out

    def record_shard(self, stage: str, taken: dict[str, Any]) -> None:
        """Write `taken` (what this rank computed itself) to `$EMONEURONS_SHARD_RECORD/<stage>-rank<r>-of-<N>.json`
        when that variable is set; otherwise nothing. Not an output: the outputs never depend on it."""
        folder = os.environ.get(SHARD_RECORD_ENV)
        if not folder:
            return
        from pathlib import Path

        from emoneurons.io.atomic import write_json

        write_json(Path(folder) / f"{stage}-rank{self.rank}-of-{self.world}.json",
                   {"stage": stage, "rank": self.rank, "world": self.world, **taken})

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def process_group_timeout_s(environ: Mapping[str, str] = os.environ) -> float:
    """$EMONEURONS_PG_TIMEOUT_S (seconds, > 0), else DEFAULT_PG_TIMEOUT_S; a bad value is one line."""
    raw = environ.get(PG_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_PG_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ParamsError(f"{PG_TIMEOUT_ENV}={raw!r}: not a number of seconds; allowed: a number > 0 (default {DEFAULT_PG_TIMEOUT_S:g})")
    return seconds


def start(model_device: str) -> Ranks:
    """Join the launched processes (a no-op for one process). The model's device picks the
    backend: gloo for `cpu` (or no GPU present), nccl for CUDA devices; the process group's
    timeout is process_group_timeout_s()."""
    if not launched():
        return Ranks()
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    timeout = timedelta(seconds=process_group_timeout_s())  # before joining: a bad value is one line
    cpu = model_device == "cpu" or not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=timeout)
    return Ranks(rank=state.process_index, world=state.num_processes,
                 local_rank=state.local_process_index, backend=str(state.backend))
