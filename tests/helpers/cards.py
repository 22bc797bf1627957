"""The cards stage's inputs and record on the tiny model: the dialogues, random per-neuron emotion
probabilities and entropies, and the record the cards page is rendered from."""

from __future__ import annotations

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.neurons.top_activations import neuron_activity
from emoneurons.report.cards.cards_json import build_cards, plan_cards
from helpers.synthetic_inputs import neurons_json

CARD_DIALOGUES = [
    "A: I can't believe this happened!\nB: Oh no, that is terrible.",
    "A: What a wonderful day.",
    "A: That smell is revolting.\nB: I'm scared of the dark.\nA: I miss her so much.",
    "A: Oh no.",
    "A: I miss her so much.\nB: What a wonderful <day> & night.",
    "B: I'm scared of the dark, what a terrible smell.",
    "A: wonderful!",
]


def card_counts(seed: int = 0):
    torch.manual_seed(seed)
    P = torch.rand(4, 64, 6, dtype=torch.float64)
    entropy = torch.rand(4, 64, dtype=torch.float64)
    return P, entropy


def cards_record(tiny_llama, empty: str = "disgust") -> dict:
    """The cards stage's record on the tiny model, with `empty` given no selected neurons."""
    P, entropy = card_counts(1)
    selected = {e: [[i % 4, 7 * i + j] for j in range(3)] for i, e in enumerate(EMOTIONS)}
    selected[empty] = []
    plan = plan_cards(parse_neurons(neurons_json({0.01: selected}, 4, 64)), 0.01, P, entropy, 2)
    chosen = sorted({n for pairs in plan.values() for n in pairs})
    activity = neuron_activity(tiny_llama, CARD_DIALOGUES, chosen, k=3, batch_size=4, max_length=1024)
    labels = [EMOTIONS[i % 6] for i in range(len(CARD_DIALOGUES))]
    emotions = build_cards(plan, activity, P, entropy, tiny_llama.tokenizer, [f"d{i}" for i in range(len(CARD_DIALOGUES))], labels,
                           {e: len(v) for e, v in selected.items()}, window=4, top_tokens=3, min_token_count=1)
    return {"model": "tiny <random> llama", "top_rate": 0.01, "top_neurons": 2, "contexts": 3, "window": 4, "min_token_count": 1,
            "split": "train", "dialogues": len(CARD_DIALOGUES), "tokens": activity.tokens, "emotions": emotions}
