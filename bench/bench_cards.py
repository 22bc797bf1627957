"""Cards' search of the train split against count's pass: the same forward pass over the same
dialogues and model, in one process (a benchmark, not a test).

    .venv/bin/python bench/bench_cards.py [--dialogues 3000] [--repeats 2] [--threads 1] [--model DIR]

The dialogues are bench/scale_run.py's synthetic EmoPrism-shaped ones (6-12 turns, ~230 tokens of
SmolLM2's tokenizer each); the model is scale_run's tiny random Llama (4 layers, hidden 64, FFN
256, SmolLM2's tokenizer: a vocabulary of 49,152, so the cards' per-token firing counts are
[49,152 x neurons]) unless --model names a saved one. count is neurons/counting.activation_counts
(gate, all positions); cards is neurons/top_activations.neuron_activity with the default cards
plan's size (cards.top_neurons 4 x 6 emotions = 24 neurons spread over the layers, k =
cards.contexts 5). Repeats alternate count and cards; each prints its counted tokens per second,
and the last line the ratio cards / count of their medians (1.0: as fast per token).
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import typer  # noqa: E402
from scale_run import REPO, _dialogue, save_tiny_model  # noqa: E402

from emoneurons.emotions import EMOTIONS  # noqa: E402
from emoneurons.model.loading import load_model  # noqa: E402
from emoneurons.neurons.counting import activation_counts  # noqa: E402
from emoneurons.neurons.top_activations import neuron_activity  # noqa: E402
from emoneurons.params import load_params  # noqa: E402

PARAMS = load_params(REPO / "params.yaml")


def dialogues(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n EmoPrism-shaped dialogues (scale_run's generator), emotions cycled."""
    rng = random.Random(seed)
    emotions = [EMOTIONS[i % len(EMOTIONS)] for i in range(n)]
    return [_dialogue(rng, rng.choice(["music", "travel", "work", "family", "food"]), e) for e in emotions], emotions


def card_neurons(layers: int, per_layer: int, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """n neurons spread over every layer, as the cards plan picks them (sorted, distinct)."""
    generator = torch.Generator().manual_seed(seed)
    flat = torch.randperm(layers * per_layer, generator=generator)[:n].tolist()
    return sorted((i // per_layer, i % per_layer) for i in flat)


def main(
    n: int = typer.Option(3000, "--dialogues", help="synthetic train dialogues"),
    repeats: int = typer.Option(2, help="alternating runs of each"),
    threads: int = typer.Option(1, help="torch intra-op threads"),
    model: Path = typer.Option(None, help="a saved model folder (default: scale_run's tiny model, made once)"),
) -> None:
    torch.set_num_threads(threads)
    if model is None:
        model = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "emoneurons" / "bench-tiny-llama"
        save_tiny_model(model)
    settings = PARAMS.model.model_copy(update={"id": str(model), "device": "cpu"})
    lm = load_model(settings)
    texts, emotions = dialogues(n)
    config = lm.model.config
    neurons = card_neurons(config.num_hidden_layers, config.intermediate_size, 6 * PARAMS.cards.top_neurons)
    kwargs = {"batch_size": settings.batch_size, "max_length": settings.max_length}
    rates: dict[str, list[float]] = {"count": [], "cards": []}
    print(f"{n} dialogues, model {model.name} ({config.num_hidden_layers} layers, hidden {config.hidden_size}, "
          f"FFN {config.intermediate_size}, vocabulary {config.vocab_size}), {len(neurons)} card neurons, "
          f"{threads} thread(s), batch {settings.batch_size}")
    for repeat in range(repeats):
        start = time.perf_counter()
        _, T, _ = activation_counts(lm, texts, emotions, text="dialogue", positions="all", activation="gate", **kwargs)
        rates["count"].append(int(T.sum()) / (time.perf_counter() - start))
        start = time.perf_counter()
        activity = neuron_activity(lm, texts, neurons, k=PARAMS.cards.contexts, **kwargs)
        rates["cards"].append(activity.tokens / (time.perf_counter() - start))
        assert activity.tokens == int(T.sum())  # the same counted tokens
        print(f"repeat {repeat + 1}: count {rates['count'][-1]:,.0f} tokens/s, cards {rates['cards'][-1]:,.0f} tokens/s "
              f"({activity.tokens:,} tokens)")
    count, cards = statistics.median(rates["count"]), statistics.median(rates["cards"])
    print(f"median: count {count:,.0f} tokens/s, cards {cards:,.0f} tokens/s; cards / count = {cards / count:.2f}")


if __name__ == "__main__":
    typer.run(main)
