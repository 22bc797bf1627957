"""Neuron cards: for each emotion its top selected neurons, with their P per emotion, entropy,
top train contexts and the tokens they fire on most often relative to their frequency
(reports/cards/cards.json; the page is report/cards/page.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.errors import EmoneuronsError
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.neurons.top_activations import NeuronActivity, token_lift


class CardsDataError(EmoneuronsError, ValueError):
    """data/counts or data/neurons cannot make cards, said in one line."""


def card_neurons(selected: Sequence[Sequence[int]], P: Tensor, entropy: Tensor, emotion: str, top: int) -> list[tuple[int, int]]:
    """The emotion's `top` neurons among `selected` [[layer, index], ...]: the highest share of
    the emotion in the neuron's P normalised over emotions first (raw P would rank the neurons that
    fire on nearly every token first for every emotion), then lowest entropy, then (layer, index)."""
    e = EMOTION_INDEX[emotion]

    def share(layer: int, index: int) -> float:
        total = float(P[layer, index].sum())
        return float(P[layer, index, e]) / total if total > 0 else 0.0

    keyed = sorted((-share(layer, index), float(entropy[layer, index]), int(layer), int(index)) for layer, index in selected)
    return [(layer, index) for _, _, layer, index in keyed[:top]]


def plan_cards(neurons: NeuronsFile, top_rate: float, P: Tensor, entropy: Tensor, top: int) -> dict[str, list[tuple[int, int]]]:
    """Each emotion's card neurons at the selection at `top_rate` of neurons.json."""
    selection = neurons.selection(top_rate)
    if (neurons.layers, neurons.neurons_per_layer) != (P.shape[0], P.shape[1]):
        raise CardsDataError(f"{neurons.source} and data/counts disagree on the model's shape; rerun count and select")
    return {emotion: card_neurons(selection.neurons.get(emotion, []), P, entropy, emotion, top) for emotion in EMOTIONS}


def _text(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False) if ids else ""


def context_record(tokenizer: PreTrainedTokenizerBase, fed: Sequence[int], start: int, position: int, window: int) -> dict[str, str]:
    """The activating token and up to `window` of the dialogue's own tokens either side of it."""
    return {
        "before": _text(tokenizer, fed[max(start, position - window) : position]),
        "token": _text(tokenizer, fed[position : position + 1]),
        "after": _text(tokenizer, fed[position + 1 : position + 1 + window]),
        "clipped_before": position - window > start,
        "clipped_after": position + 1 + window < len(fed),
    }


def build_cards(
    plan: Mapping[str, Sequence[tuple[int, int]]],
    activity: NeuronActivity,
    P: Tensor,
    entropy: Tensor,
    tokenizer: PreTrainedTokenizerBase,
    dialogue_ids: Mapping[int, str] | Sequence[str],
    labels: Mapping[int, str] | Sequence[str],
    selected: Mapping[str, int],
    *,
    window: int,
    top_tokens: int,
    min_token_count: int,
) -> dict[str, Any]:
    """The `emotions` part of cards.json: per emotion its cards (docs/CONTRACTS.md). `dialogue_ids`
    and `labels`: by dialogue index, at least those of the dialogues in `activity.top`."""
    column = {neuron: c for c, neuron in enumerate(activity.neurons)}
    lifts = token_lift(activity.token_counts, activity.token_active, min_count=min_token_count, top=top_tokens)
    # P normalised over emotions, as entropy sees it.
    normed = P / P.sum(-1, keepdim=True).clamp_min(torch.finfo(P.dtype).tiny)
    emotions: dict[str, Any] = {}
    for emotion in EMOTIONS:
        cards = []
        for layer, index in plan.get(emotion, []):
            c = column[(layer, index)]
            contexts = []
            for rank in range(activity.top.values.shape[0]):
                value, d = float(activity.top.values[rank, c]), int(activity.top.dialogue[rank, c])
                if d < 0:
                    break
                position = int(activity.top.position[rank, c])
                contexts.append({"dialogue": dialogue_ids[d], "label": labels[d], "activation": round(value, 4),
                                 **context_record(tokenizer, activity.fed[d], activity.start[d], position, window)})
            fired = int(activity.token_active[:, c].sum())
            cards.append({
                "layer": layer, "index": index,
                "P": {e: round(float(P[layer, index, i]), 6) for i, e in enumerate(EMOTIONS)},
                "P_normalised": {e: round(float(normed[layer, index, i]), 4) for i, e in enumerate(EMOTIONS)},
                "entropy": round(float(entropy[layer, index]), 4),
                "fires": fired, "tokens": activity.tokens,
                "contexts": contexts,
                "top_tokens": [{"token": _text(tokenizer, [t.token]), "id": t.token, "count": t.count, "active": t.active,
                                "lift": t.lift} for t in lifts[c]],
            })
        emotions[emotion] = {"selected": int(selected.get(emotion, 0)), "cards": cards}
    return emotions
