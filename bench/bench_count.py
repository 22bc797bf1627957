"""Benchmark: activation_counts vs a plain decoder-stack forward over the same length-bucketed batches.

    .venv/bin/python bench/bench_count.py [--models tiny,embedded] [--dialogues 48] [--repeats 5]

Prints tokens/s of both (medians over interleaved repeats), their ratio (target >= 0.95) and the
padding share of the processed tokens (target < 10%).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import typer  # noqa: E402

from emoneurons.emotions import EMOTIONS  # noqa: E402
from emoneurons.model.batching import length_batches  # noqa: E402
from emoneurons.model.loading import LoadedModel, load_model  # noqa: E402
from emoneurons.neurons.counting import activation_counts, counting_inputs, padded_batch  # noqa: E402
from emoneurons.params import load_params  # noqa: E402

OPENERS = ["I can't believe", "Did you hear that", "Honestly,", "Look at this:", "Wait,", "You know what,"]
SUBJECTS = ["the neighbour's dog", "my landlord", "the new manager", "our old car", "the concert", "the test results"]
ENDINGS = ["just happened again.", "is all over the news.", "changed everything for us.", "was left in the kitchen.", "came back today."]
REPLIES = ["That is awful.", "No way, really?", "I feel the same.", "Oh, what a day.", "Let's talk about it later.", "I had no idea."]


def synthetic_dialogues(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n template-like dialogues of 2 to 6 turns, emotions cycled."""
    rng = random.Random(seed)
    dialogues = []
    for _ in range(n):
        turns = []
        for t in range(rng.randint(2, 6)):
            speaker = "AB"[t % 2]
            line = f"{rng.choice(OPENERS)} {rng.choice(SUBJECTS)} {rng.choice(ENDINGS)}" if t % 2 == 0 else rng.choice(REPLIES)
            turns.append(f"{speaker}: {line}")
        dialogues.append("\n".join(turns))
    return dialogues, [EMOTIONS[i % len(EMOTIONS)] for i in range(n)]


def tiny_model() -> LoadedModel:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers.tiny_models import build_tiny_llama, build_tokenizer

    tokenizer = build_tokenizer()
    model = build_tiny_llama(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model=model, tokenizer=tokenizer, name="tiny-random-llama")


def plain_forward(lm: LoadedModel, batches: list) -> None:
    with torch.inference_mode():
        for batch in batches:
            lm.model.model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids, use_cache=False
            )


def prepared_batches(lm: LoadedModel, dialogues: list[str], emotions: list[str], batch_size: int, text: str) -> list:
    """The batches activation_counts builds: tokenized, length-bucketed, padded."""
    items, _ = counting_inputs(lm.tokenizer, dialogues, emotions, text=text, positions="all", max_length=4096)
    pad_id = lm.tokenizer.pad_token_id or 0
    return [
        padded_batch([items[i] for i in idx], pad_id, lm.tokenizer.padding_side)
        for idx in length_batches([len(item.ids) for item in items], batch_size)
    ]


def bench(lm: LoadedModel, dialogues: list[str], emotions: list[str], batch_size: int, repeats: int, text: str) -> None:
    start = time.perf_counter()
    batches = prepared_batches(lm, dialogues, emotions, batch_size, text)
    preparation = time.perf_counter() - start
    real = sum(int(b.attention_mask.sum()) for b in batches)
    processed = sum(b.attention_mask.numel() for b in batches)
    plain_times, count_times = [], []
    activation_counts(lm, dialogues[:batch_size], emotions[:batch_size], batch_size=batch_size, max_length=1024, text=text, positions="all", activation="gate")  # warm-up
    for repeat in range(repeats):
        order = ("plain", "count") if repeat % 2 == 0 else ("count", "plain")  # interleaved, alternating first
        for kind in order:
            start = time.perf_counter()
            if kind == "plain":
                plain_forward(lm, batches)
            else:
                activation_counts(lm, dialogues, emotions, batch_size=batch_size, max_length=1024, text=text, desc="bench", positions="all", activation="gate")
            (plain_times if kind == "plain" else count_times).append(time.perf_counter() - start)
    plain_tps, count_tps = real / statistics.median(plain_times), real / statistics.median(count_times)
    print(
        f"{lm.name} [{text}]: {len(dialogues)} dialogues, {real} tokens in {len(batches)} batches of <= {batch_size}; "
        f"padding {100 * (processed - real) / processed:.1f}% of {processed} processed\n"
        f"  plain forward  {plain_tps:8.1f} tok/s  (runs {', '.join(f'{t:.2f}' for t in plain_times)} s)\n"
        f"  activation_counts {count_tps:8.1f} tok/s  (runs {', '.join(f'{t:.2f}' for t in count_times)} s)\n"
        f"  ratio {count_tps / plain_tps:.3f} (target >= 0.95); against plain forward + the same input "
        f"preparation ({1000 * preparation:.0f} ms: tokenize, bucket, pad): "
        f"{statistics.median(plain_times) / (statistics.median(count_times) - preparation):.3f}",
        flush=True,
    )


def main(
    models: str = typer.Option("tiny,embedded", help="comma-separated: tiny, embedded"),
    dialogues: int = typer.Option(48, help="synthetic dialogues"),
    repeats: int = typer.Option(5, help="interleaved repeats of each measurement"),
    batch_size: int = typer.Option(16, help="sequences per batch (params: model.batch_size)"),
    text: str = typer.Option("dialogue", help="dialogue | prompt"),
) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    texts, emotions = synthetic_dialogues(dialogues)
    for name in models.split(","):
        lm = tiny_model() if name == "tiny" else load_model(load_params(Path(__file__).resolve().parents[1] / "params.yaml").model)
        bench(lm, texts, emotions, batch_size, repeats, text)


if __name__ == "__main__":
    typer.run(main)
