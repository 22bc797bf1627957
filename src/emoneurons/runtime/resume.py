"""What each process of count and mask-eval runs, and what it keeps across a kill.

count: each rank tokenizes a contiguous share of the train dialogues first (their token counts,
summed over the ranks, give every rank the same length-sorted batches), then the batches are
dealt to the ranks (distributed.shard); every
`count.checkpoint_every` finished batches a rank saves its partial integer counts and how many
of its batches are done; at the end the counts are summed over ranks (exact, int64).
mask-eval: the masked conditions are dealt to the ranks; the test dialogues are run a chunk at a
time (evaluate/chunking.py), and each finished condition's predictions on a chunk are saved; rank 0
gathers all of them. The unmodified condition runs on every rank that has a chunk to run: the
engine keeps its states as the start of every masked run (and its prior calibrates them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emoneurons.params import CountParams, EvalParams, ModelParams
from emoneurons.runtime.checkpoint import Checkpoints, run_key
from emoneurons.runtime.distributed import Ranks

if TYPE_CHECKING:
    import torch


def count_checkpoints(root: Path, model: ModelParams, count: CountParams, prompt_format: str, train: Path) -> Checkpoints:
    """The count stage's checkpoints, keyed by the model, count and eval.prompt_format params (not
    checkpoint_every: the outputs do not depend on it) and the train split's bytes."""
    values = {"model": model.model_dump(), "count": count.model_dump(exclude={"checkpoint_every"}),
              "eval.prompt_format": prompt_format}
    return Checkpoints(root, "count", run_key(values, [train]))


def mask_eval_checkpoints(root: Path, model: ModelParams, top_rate: float, eval_params: EvalParams,
                          inputs: list[Path]) -> Checkpoints:
    """mask-eval's checkpoints, keyed by the model, select.top_rate and eval params and the inputs' bytes."""
    values = {"model": model.model_dump(), "select.top_rate": top_rate, "eval": eval_params.model_dump()}
    return Checkpoints(root, "mask-eval", run_key(values, inputs))


class CountSchedule:
    """counting.activation_counts' batch schedule for one rank, with checkpoints."""

    def __init__(self, ranks: Ranks, checkpoints: Checkpoints | None, every: int) -> None:
        self.ranks, self.checkpoints, self.every = ranks, checkpoints, every
        self.name = f"rank{ranks.rank}-of-{ranks.world}.safetensors"
        self.mine: list[int] = []
        self.total = 0  # batches of all ranks
        self.done = 0  # of this rank's batches
        self.dialogues = 0  # in this rank's done batches
        self.resumed = 0  # batches restored from a checkpoint (0: a fresh start)
        self.counted = np.zeros(0, dtype=bool)  # per train dialogue: this process counted it (not restored)

    def rows(self, n: int) -> tuple[int, int]:
        """The contiguous share of the n train dialogues this rank tokenizes first (and reads alone)."""
        self.counted = np.zeros(n, dtype=bool)
        return n * self.ranks.rank // self.ranks.world, n * (self.ranks.rank + 1) // self.ranks.world

    def merged(self, values: torch.Tensor) -> torch.Tensor:
        return self.ranks.sum(values)

    def store(self) -> Path | None:
        """The tokens are kept beside the counts: a resumed run does not tokenize again."""
        return self.checkpoints.folder if self.checkpoints is not None else None

    def start(self, n_batches: int) -> tuple[list[int], tuple[torch.Tensor, torch.Tensor] | None]:
        """The batch indices still to run, and the saved partial (counts [L, 6, N], T [6]) or None."""
        self.mine, self.total = self.ranks.shard(n_batches), n_batches
        saved = self.checkpoints.load_tensors(self.name) if self.checkpoints else None
        if self.checkpoints is not None and self.ranks.main:
            # Partial sums over another split of the batches: they cannot be split again.
            ours = f"-of-{self.ranks.world}.safetensors"
            others = [p.name for p in self.checkpoints.files() if p.name.startswith("rank") and not p.name.endswith(ours)]
            if others:
                print(f"checkpoint: {self.checkpoints.folder} holds the counts of another number of processes "
                      f"({', '.join(others)}): not used, counting afresh with {self.ranks.world}", file=sys.stderr)
        if saved is not None:
            tensors, meta = saved
            if meta.get("batches") != n_batches or not 0 < meta.get("done", 0) <= len(self.mine):
                print(f"checkpoint: {self.checkpoints.folder / self.name} does not match this run's batches; starting afresh",
                      file=sys.stderr)
            else:
                self.done = self.resumed = int(meta["done"])
                self.dialogues = int(meta["dialogues"])
                print(f"count: rank {self.ranks.rank} resumes after {self.done} of its {len(self.mine)} batches "
                      f"({meta['dialogues']} dialogues) from {self.checkpoints.folder}", file=sys.stderr)
                return self.mine[self.done:], (tensors["counts"], tensors["T"])
        return self.mine, None

    def finished(self, dialogues: np.ndarray, snapshot: Callable[[], torch.Tensor], T: torch.Tensor) -> None:
        """After each batch: every `every` batches, save the partial counts (one host copy)."""
        self.done += 1
        self.dialogues += len(dialogues)
        self.counted[dialogues] = True
        if self.checkpoints is not None and self.done % self.every == 0 and self.done < len(self.mine):
            self.checkpoints.save_tensors(self.name, {"counts": snapshot().cpu(), "T": T.cpu()},
                                          {"batches": self.total, "done": self.done, "dialogues": self.dialogues})

    def combine(self, counts: torch.Tensor, T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The counts summed over every rank (and this rank's share recorded, distributed.record_shard)."""
        self.ranks.record_shard("count", {"batches": self.total, "resumed_batches": self.resumed,
                                          "counted_dialogues": np.flatnonzero(self.counted).tolist()})
        return self.ranks.sum(counts), self.ranks.sum(T)


class ConditionSchedule:
    """masking_eval.evaluate_masking's schedule of the masked conditions for one rank, with a
    checkpoint per finished condition and chunk of the test dialogues (any rank count can resume
    them: a run's result does not depend on which rank ran it), and rank 0's unmodified run and
    draw-level null draws per chunk (a chunk whose runs are all saved is skipped). A run (the tuple mask-eval keeps for one
    condition on one chunk: predictions, tokens, and whatever else it carries, tensors included) is
    saved whole, with the key of the chunk's rows: a saved run of other rows is redone."""

    def __init__(self, ranks: Ranks, checkpoints: Checkpoints | None) -> None:
        self.ranks, self.checkpoints = ranks, checkpoints
        self.processes = ranks.world
        self.main = ranks.main
        self.chunks: list[str] = []
        self.ran: set[int] = set()  # the conditions this process ran on some chunk (not those restored)
        self.restored: list[int] = []

    # The main process's runs besides the masked conditions (masking_eval.UNMODIFIED, DRAWS).
    MAIN_ONLY = {-1: "unmodified", -2: "draw-null"}

    @classmethod
    def _name(cls, index: int, chunk: int) -> str:
        """A masked condition's file (index >= 0), or a MAIN_ONLY run's, of one chunk."""
        return f"{cls.MAIN_ONLY[index] if index < 0 else f'condition-{index:05d}'}-chunk-{chunk:04d}.pt"

    def start(self, n_masks: int, chunks: list[str]) -> tuple[list[int], dict[tuple[int, int], tuple]]:
        """This rank's masked conditions, and the saved runs by (chunk, index) of those (and, on
        rank 0, of the MAIN_ONLY runs: negative indices) whose chunk holds the rows of `chunks`
        (each chunk's rows_key)."""
        self.chunks = list(chunks)
        mine = self.ranks.shard(n_masks)
        saved = {}
        for chunk, key in enumerate(self.chunks):
            for index in (*mine, *(self.MAIN_ONLY if self.main else ())):
                data = self.checkpoints.load_object(self._name(index, chunk)) if self.checkpoints else None
                if data is not None and data.get("index") == index and data.get("rows") == key:
                    saved[(chunk, index)] = tuple(data["run"])
        masked = [index for _, index in saved if index >= 0]
        self.restored = sorted(set(masked))
        if masked:
            runs = "" if len(self.chunks) == 1 else f" x chunks ({len(self.chunks)} chunks of the test dialogues)"
            print(f"mask-eval: rank {self.ranks.rank} resumes {len(masked)} finished conditions{runs} from "
                  f"{self.checkpoints.folder}", file=sys.stderr)
        return mine, saved

    def finished(self, chunk: int, index: int, run: tuple) -> None:
        if index >= 0:
            self.ran.add(index)
        if self.checkpoints is not None:
            self.checkpoints.save_object(self._name(index, chunk), {"index": index, "rows": self.chunks[chunk], "run": list(run)})

    def combine(self, runs: dict[int, tuple]) -> dict[int, tuple] | None:
        """Every rank's runs merged on rank 0; None on the others (and this rank's share recorded)."""
        self.ranks.record_shard("mask-eval", {"ran_conditions": sorted(self.ran), "restored_conditions": self.restored})
        gathered = self.ranks.gather(runs)
        if gathered is None:
            return None
        return {index: run for part in gathered for index, run in part.items()}
