"""Synthetic inputs of the neuron and evaluation code: a neurons.json, a labelled split, the
counting dialogues, EmoPrism records."""

from __future__ import annotations

import polars as pl
import torch

from emoneurons.emotions import EMOTIONS

LAYERS, PER_LAYER = 6, 64


def neurons_json(selections: dict[float, dict[str, list[list[int]]]], layers: int, per_layer: int) -> dict:
    """A neurons.json of the given neurons per ratio ({ratio: {emotion: [[layer, index], ...]}}), the
    first ratio as top_rate."""
    return {"top_rate": next(iter(selections)), "assign": "lape", "layers": layers, "neurons_per_layer": per_layer,
            "ratios": {f"{ratio:g}": {"selected": len({tuple(p) for pairs in chosen.values() for p in pairs}), "neurons": chosen}
                       for ratio, chosen in selections.items()}}


def synthetic_neurons(ratios=(0.01, 0.02), layers=LAYERS, per_layer=PER_LAYER, seed=0) -> dict:
    """A neurons.json: each emotion gets k*ratio-scaled neurons spread over the layers."""
    generator = torch.Generator().manual_seed(seed)
    out = {"top_rate": ratios[0], "assign": "lape", "layers": layers, "neurons_per_layer": per_layer, "ratios": {}}
    for ratio in ratios:
        chosen = {}
        for _e, emotion in enumerate(EMOTIONS):
            n = max(2, round(ratio * layers * per_layer))
            flat = torch.randperm(layers * per_layer, generator=generator)[:n]
            # Sadness lives in the top layers only: its masks start above layer 0.
            pairs = sorted([int(i) // per_layer, int(i) % per_layer] for i in flat)
            if emotion == "sadness":
                pairs = sorted([layers - 1 - (l % 2), i] for l, i in pairs)
                pairs = [list(p) for p in dict.fromkeys(tuple(p) for p in pairs)]
            chosen[emotion] = pairs
        selected = len({tuple(pair) for pairs in chosen.values() for pair in pairs})
        out["ratios"][f"{ratio:g}"] = {"selected": selected, "neurons": chosen}
    return out


def synthetic_p_active(layers=LAYERS, per_layer=PER_LAYER, seed=0) -> torch.Tensor:
    """P(active) [layers, neurons] float64 in (0, 1), as selection.overall_activation_probability gives."""
    return torch.rand(layers, per_layer, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.98 + 0.01


def write_synthetic_counts(folder, layers=LAYERS, per_layer=PER_LAYER, seed=0) -> None:
    """A count stage's counts.safetensors (f int64 [layers, neurons, 6], T int64 [6]) in `folder`."""
    from pathlib import Path

    from safetensors.torch import save_file

    T = torch.tensor([100, 110, 120, 130, 140, 150], dtype=torch.int64)
    f = (torch.rand(layers, per_layer, 6, generator=torch.Generator().manual_seed(seed)) * T).to(torch.int64)
    Path(folder).mkdir(parents=True, exist_ok=True)
    save_file({"f": f, "T": T}, Path(folder) / "counts.safetensors")


def synthetic_split(per_emotion: int, offset: int = 0) -> pl.DataFrame:
    lines = {
        "anger": "A: You broke it again, I am furious!", "disgust": "A: That smell is revolting.",
        "fear": "A: I'm scared of the dark.", "happiness": "A: What a wonderful day.",
        "sadness": "A: I miss her so much.", "surprise": "A: I can't believe this happened!",
    }
    rows = [(f"{e}-{k + offset}", e, lines[e] + "\nB: Oh." * (1 + k % 3)) for e in EMOTIONS for k in range(per_emotion)]
    return pl.DataFrame({"id": [r[0] for r in rows], "label": [r[1] for r in rows], "theme": [r[1] for r in rows],
                         "dialogue": [r[2] for r in rows]})


# Different lengths (1 to ~40 tokens), so every batch pads; all six emotions, one twice.
COUNTING_DIALOGUES = [
    "A: I can't believe this happened!\nB: Oh no, that is terrible.",
    "A: That smell is revolting.",
    "A: What a wonderful day.\nB: I miss her so much.\nA: I'm scared of the dark.\nB: Oh no.",
    "B: Oh",
    "A: I'm scared of the dark.\nB: What a wonderful day, that smell is revolting.",
    "A: I miss her so much.\nB: That is terrible.",
    "A: I can't believe this happened! What a day.",
]


COUNTING_LABELS = ["anger", "disgust", "happiness", "surprise", "fear", "sadness", "surprise"]


def sample_records() -> list[dict]:
    """Two per emotion: one all judges agree on, one where only 'gpt' agrees (2 of 4 labels)."""
    records = []
    for i, emotion in enumerate(EMOTIONS):
        other = EMOTIONS[(i + 1) % 6]
        records.append(emoprism_record(f"topic {i}", emotion, emotion, emotion.capitalize(), f"{emotion}."))
        records.append(emoprism_record(f"topic {i}", emotion, emotion, other, "I cannot tell"))
    return records


def emoprism_record(topic: str, theme: str, gpt: str, gemini: str, claude: str, dialogue: str | None = None) -> dict:
    return {
        "topic": topic,
        "theme": theme,
        "dialogue": dialogue or f"A: Let us talk about {topic}.\nB: It makes me feel {theme}.",
        "gpt-4o-mini": gpt, "gemini-1.5-flash": gemini, "claude-3-haiku": claude,
        "label": theme,
    }


def synthetic_directions(layers: int = LAYERS, per_layer: int = PER_LAYER, hidden: int = 16, seed: int = 0,
                         draws: int = 50) -> dict:
    """A directions.json from random class sums (each emotion shifted its own way) and
    synthetic_neurons' selection at 0.01, through the library's own summary and record."""
    from emoneurons.io.directions_file import directions_record
    from emoneurons.neurons.directions import ClassSums, directions_summary
    from emoneurons.neurons.masking import neurons_by_layer
    from emoneurons.neurons.write_alignment import uniform_same_layer

    generator = torch.Generator().manual_seed(seed)
    sums = ClassSums.zeros(layers, hidden, per_layer)
    sums.tokens += torch.tensor([40, 55, 30, 70, 45, 60])
    sums.dialogues += 5
    shift = torch.randn(layers, 6, hidden, generator=generator)
    sums.hidden += shift * sums.tokens[None, :, None]
    sums.squares += (shift ** 2 + 4.0) * sums.tokens[None, :, None]  # within-class variance 4 per dimension
    sums.values += torch.randn(layers, 6, per_layer, generator=generator)
    write = [torch.randn(per_layer, hidden, generator=generator) for _ in range(layers)]
    neurons = synthetic_neurons(layers=layers, per_layer=per_layer, seed=seed)["ratios"]["0.01"]["neurons"]
    selected = {e: neurons_by_layer(pairs) for e, pairs in neurons.items()}
    computed = directions_summary(sums, write, torch.rand(layers, per_layer, generator=generator), selected, ratio=0.01,
                                  draws=draws, seed=seed, control_draw=uniform_same_layer, control="uniform")
    truncated = {"max_length": 1024, "budget": 1023, "dialogues": 0, "tokens_cut": 0, "longest_cut": 0}
    return directions_record(model="tiny-random", write_direction="down_proj column", truncated=truncated, **computed)
