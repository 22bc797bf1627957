"""Scale benchmark (not a test): the directions stage's streaming pass at 10x and 100x the default
run's 79 train dialogues (and more), with the tiny random Llama of the tests, and its memory.

    .venv/bin/python bench/bench_directions_scale.py [--dialogues 790,7900,20000] [--chunk 4096] [--threads 1]

Per size: a train split of synthetic dialogues (bench_count.synthetic_dialogues) written to a
parquet file, then streamed as the stage streams it (neurons/direction_run.py: train_pieces over
count_inputs.ParquetDialogues, then
accumulate_class_sums per chunk into one ClassSums); printed: dialogues, summed tokens, wall time,
tokens/s, and the process's RSS before the pass and its highest value after any chunk (VmRSS).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl  # noqa: E402
import torch  # noqa: E402
import typer  # noqa: E402
from bench_count import synthetic_dialogues, tiny_model  # noqa: E402
from bench_count_scale import rss_mib  # noqa: E402

from emoneurons.neurons.count_inputs import PIECE_ROWS, ParquetDialogues  # noqa: E402
from emoneurons.neurons.direction_run import train_pieces  # noqa: E402
from emoneurons.neurons.directions import ClassSums, accumulate_class_sums  # noqa: E402


def main(
    dialogues: str = typer.Option("790,7900,20000", help="train split sizes, comma-separated"),
    chunk: int = typer.Option(PIECE_ROWS, help="dialogues per piece (the stage's: count_inputs.PIECE_ROWS)"),
    batch_size: int = typer.Option(16, help="sequences per batch (params: model.batch_size)"),
    threads: int = typer.Option(1, help="torch threads"),
) -> None:
    lm = tiny_model()
    torch.set_num_threads(threads)
    print(f"{lm.name}, {threads} thread(s), torch {torch.__version__}, chunks of {chunk} dialogues")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in dialogues.split(",")):
            texts, emotions = synthetic_dialogues(n)
            path = Path(tmp) / f"train-{n}.parquet"
            pl.DataFrame({"dialogue": texts, "theme": emotions}).write_parquet(path)
            del texts, emotions
            sums = ClassSums.for_model(lm)
            before = peak = rss_mib()
            wall = time.perf_counter()
            for chunk_texts, chunk_emotions in train_pieces(ParquetDialogues(path), chunk):
                accumulate_class_sums(lm, chunk_texts, chunk_emotions, sums, text="dialogue", positions="all",
                                      batch_size=batch_size, max_length=1024, prompt_format=None)
                peak = max(peak, rss_mib())
            wall = time.perf_counter() - wall
            tokens = int(sums.tokens.sum())
            print(f"  {n:6d} dialogues, {tokens:9d} summed tokens: {wall:7.1f} s ({tokens / wall:7.0f} tokens/s); "
                  f"RSS {before:.1f} MiB before, highest after a chunk {peak:.1f} MiB (+{peak - before:.1f})")


if __name__ == "__main__":
    typer.run(main)
