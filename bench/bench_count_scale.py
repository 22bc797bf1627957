"""Scale benchmark (not a test): count >= 20,000 synthetic dialogues with the tiny random Llama
and show time linear in tokens and resident memory flat.

    .venv/bin/python bench/bench_count_scale.py [--dialogues 20000] [--batch-size 16] [--threads 1]

activation_counts runs once over all dialogues; a batch schedule (the hook resume.CountSchedule
uses) records after every batch the counted tokens, the elapsed time and the process's RSS
(VmRSS from /proc/self/status). Printed at 10%, 50% and 100% of the counted tokens: elapsed
seconds, tokens/s since the previous mark, RSS; and the RSS before the call (model, texts),
after tokenizing every dialogue (before the first batch), and its growth during the count.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import typer  # noqa: E402
from bench_count import synthetic_dialogues, tiny_model  # noqa: E402

from emoneurons.neurons.counting import activation_counts  # noqa: E402


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Recorder:
    """A BatchSchedule that runs every batch and records (tokens counted, seconds, RSS MiB) after each."""

    def __init__(self) -> None:
        self.marks: list[tuple[int, float, float]] = []
        self.start_time = 0.0
        self.rss_at_start = 0.0  # after tokenizing (into the token store on disk) and bucketing, before the first batch

    def rows(self, n: int) -> tuple[int, int]:
        return 0, n

    def merged(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def store(self):
        return None  # a temporary folder

    def start(self, n_batches: int):
        self.rss_at_start = rss_mib()
        self.start_time = time.perf_counter()
        return list(range(n_batches)), None

    def finished(self, batch_size: int, snapshot, T: torch.Tensor) -> None:
        self.marks.append((int(T.sum()), time.perf_counter() - self.start_time, rss_mib()))

    def combine(self, counts: torch.Tensor, T: torch.Tensor):
        return counts, T


def main(
    dialogues: int = typer.Option(20000, help="synthetic dialogues (>= 20,000 for bench/RESULTS.md's numbers)"),
    batch_size: int = typer.Option(16, help="sequences per batch (params: model.batch_size)"),
    threads: int = typer.Option(1, help="torch threads"),
) -> None:
    lm = tiny_model()
    torch.set_num_threads(threads)
    texts, emotions = synthetic_dialogues(dialogues)
    before = rss_mib()
    recorder = Recorder()
    wall = time.perf_counter()
    f, T, _ = activation_counts(lm, texts, emotions, batch_size=batch_size, max_length=1024, schedule=recorder, desc="scale", text="dialogue", positions="all", activation="gate")
    wall = time.perf_counter() - wall
    total = int(T.sum())
    print(f"{lm.name}, {threads} thread(s), torch {torch.__version__}: {dialogues} dialogues, {total} counted tokens, "
          f"{len(recorder.marks)} batches of <= {batch_size}; f {list(f.shape)}; wall {wall:.1f} s "
          f"(incl. tokenizing); RSS before activation_counts {before:.1f} MiB, after tokenizing all dialogues "
          f"{recorder.rss_at_start:.1f} MiB")
    previous_tokens, previous_time = 0, 0.0
    for share in (0.1, 0.5, 1.0):
        tokens, seconds, rss = next(m for m in recorder.marks if m[0] >= share * total)
        rate = (tokens - previous_tokens) / max(seconds - previous_time, 1e-9)
        print(f"  {100 * share:5.0f}%: {tokens:9d} tokens at {seconds:8.1f} s  ({rate:8.0f} tokens/s since the last mark)  "
              f"RSS {rss:7.1f} MiB")
        previous_tokens, previous_time = tokens, seconds
    peak = max(m[2] for m in recorder.marks)
    print(f"  RSS growth from 10% to 100%: {recorder.marks[-1][2] - next(m for m in recorder.marks if m[0] >= 0.1 * total)[2]:+.1f} MiB; "
          f"peak {peak:.1f} MiB")


if __name__ == "__main__":
    typer.run(main)
