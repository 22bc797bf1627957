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
        for e, emotion in enumerate(EMOTIONS):
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
