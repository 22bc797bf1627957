"""The published numbers of Lee et al., *Do Large Language Models Have "Emotion Neurons"?*
(Findings of ACL 2025), that the report sets beside the run's."""

from __future__ import annotations

from typing import Any

PAPER_MODELS: dict[str, dict[str, Any]] = {
    # layers x FFN width from the public model configs; the paper selects the top 1% of them all.
    "Llama-3.1-8B-Instruct": {"layers": 32, "neurons_per_layer": 14336, "neurons": {
        "anger": 1882, "disgust": 1598, "fear": 1629, "happiness": 1320, "sadness": 1570,
        "surprise": 1070}},
    "Llama-3.1-70B-Instruct": {"layers": 80, "neurons_per_layer": 28672, "neurons": {
        "anger": 7910, "sadness": 8314, "surprise": 4976}},
}

PAPER_MASKING: tuple[tuple[str, str, float, float], ...] = (
    # (model, emotion, unmodified accuracy %, accuracy % with the emotion's neurons masked)
    ("Llama-3.1-8B-Instruct", "disgust", 96.11, 37.22),
    ("Llama-3.1-70B-Instruct", "surprise", 93.17, 73.83),
)

PAPER_OVERLAP: tuple[tuple[str, str, str, str], ...] = (
    # (model, emotion A, emotion B, published overlap)
    ("Llama-3.1-8B-Instruct", "anger", "disgust", "about 48%"),
    ("Llama-3.1-8B-Instruct", "happiness", "anger", "about 4-8%"),
    ("Llama-3.1-8B-Instruct", "happiness", "disgust", "about 4-8%"),
    ("Llama-3.1-70B-Instruct", "anger", "disgust", "about 43%"),
    ("Llama-3.1-70B-Instruct", "anger", "happiness", "about 3%"),
)

PAPER_LAYERS: tuple[tuple[str, str, float], ...] = (
    # Llama-3.1-70B-Instruct, own neurons masked in one layer range: accuracy change (pp)
    ("surprise", "bottom", -4.15), ("surprise", "middle", -10.46), ("surprise", "all", -20.75),
    ("disgust", "top", -1.63), ("fear", "all", -2.44),
)

PAPER_TEST_DIALOGUES = round(0.05 * 293_715)  # the 5% test split of the filtered data
