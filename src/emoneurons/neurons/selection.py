"""LAPE's identify step (Tang et al. 2024) on per-emotion activation counts.

P_{u,e} = f_{u,e} / T_e; normalised over emotions; entropy with 0·log0 = 0. A neuron is a
candidate only when its largest P is above the `filter_rate` quantile of all P values; the
`top_rate` lowest-entropy candidates of the whole model are selected; each selected neuron
belongs to every emotion whose P is above the `activation_bar_ratio` quantile (`lape`) or to
its argmax emotion (`argmax`).

Where LAPE's identify.py (RUCAIBox/Language-Specific-Neurons) pins a detail, it is followed:
- quantile q of values v = the k-th smallest value, k = round(len(v) * q) (its kthvalue), not
  torch.quantile's interpolation; both thresholds are taken over ALL P values of the model
  (layers x neurons x emotions), the activation bar included (LAPE's `flattened_probs`), so with
  equal rates every selected neuron belongs to at least one emotion;
- the number selected is round(top_rate * layers * neurons) (Python's round, as LAPE).
Where it leaves one open, this module decides: never-active neurons have entropy +inf and are
never selected (LAPE gives them 0 and relies on the filter); entropy ties are broken by (layer,
index) (LAPE's topk leaves them unspecified); if fewer candidates than the quota exist, only the
candidates are selected (LAPE's topk would fill up with excluded neurons); P and entropy are
float64 (LAPE: float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.params import Assign, allowed_values


@dataclass(frozen=True)
class Selection:
    neurons: dict[str, list[list[int]]]  # emotion -> [[layer, index], ...] sorted
    entropy_threshold: float | None  # the largest entropy among the selected (None: none selected)
    selected: int  # distinct neurons selected
    per_emotion: dict[str, int]
    per_layer: dict[str, list[int]]  # emotion -> count per layer

    def record(self) -> dict[str, Any]:
        """The ratio entry of data/neurons/neurons.json (docs/CONTRACTS.md)."""
        return {
            "entropy_threshold": self.entropy_threshold,
            "selected": self.selected,
            "neurons": self.neurons,
            "per_emotion": self.per_emotion,
            "per_layer": self.per_layer,
        }


def activation_probability(f: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """P [layers, neurons, 6] float64 = f / T_e; an emotion without tokens is an error."""
    if f.dim() != 3 or f.shape[-1] != len(EMOTIONS) or T.shape != (len(EMOTIONS),):
        raise ValueError(f"counts: f must be [layers, neurons, 6] and T [6], got {list(f.shape)} and {list(T.shape)}")
    empty = [EMOTIONS[e] for e in range(len(EMOTIONS)) if int(T[e]) <= 0]
    if empty:
        raise ValueError(f"no counted tokens for emotion(s) {', '.join(empty)}: P = f/T is undefined")
    return f.to(torch.float64) / T.to(torch.float64)


def overall_activation_probability(f: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """P(active) [layers, neurons] float64 over all counted tokens, every emotion's together:
    f summed over emotions / T summed (the activity an activity-matched control matches)."""
    if f.dim() != 3 or f.shape[-1] != len(EMOTIONS) or T.shape != (len(EMOTIONS),):
        raise ValueError(f"counts: f must be [layers, neurons, 6] and T [6], got {list(f.shape)} and {list(T.shape)}")
    total = int(T.sum())
    if total <= 0:
        raise ValueError("no counted tokens: P(active) = f/T is undefined")
    return f.to(torch.float64).sum(-1) / total


def lape_quantile(values: torch.Tensor, rate: float) -> float:
    """The k-th smallest of all values, k = round(n * rate) clamped to 1..n (LAPE's kthvalue)."""
    flat = values.flatten()
    k = min(max(round(flat.numel() * rate), 1), flat.numel())
    return float(flat.kthvalue(k).values)


def neuron_entropy(P: torch.Tensor) -> torch.Tensor:
    """Entropy of each neuron's P normalised over emotions (0·log0 = 0); +inf if never active.
    The emotions are summed in sorted order, so the entropy does not change by one bit when the
    emotions are listed in another order (float sums depend on their order)."""
    P = P.sort(-1).values
    total = P.sum(-1, keepdim=True)
    normed = torch.where(total > 0, P / total.clamp_min(torch.finfo(P.dtype).tiny), 0.0)
    logs = torch.where(normed > 0, normed.clamp_min(torch.finfo(P.dtype).tiny).log(), 0.0)
    entropy = -(normed * logs).sum(-1)
    return torch.where(total.squeeze(-1) > 0, entropy, torch.inf)


def selected_count(n_neurons: int, top_rate: float) -> int:
    """How many neurons top_rate selects: round(top_rate * n) (Python's round, as LAPE)."""
    return round(n_neurons * top_rate)


def select_emotion_neurons(
    f: torch.Tensor,
    T: torch.Tensor,
    *,
    top_rate: float,
    filter_rate: float,
    activation_bar_ratio: float,
    assign: Assign,
) -> Selection:
    """LAPE identify: the top_rate lowest-entropy candidate neurons, assigned to emotions."""
    if assign not in get_args(Assign):
        raise ValueError(f"assign {assign!r}: allowed: {allowed_values(Assign)}")
    P = activation_probability(f, T)
    n_layers, n_neurons, _ = P.shape
    entropy = neuron_entropy(P)
    candidate = P.amax(-1) > lape_quantile(P, filter_rate)
    ranked = torch.where(candidate, entropy, torch.inf).flatten()
    # Stable sort of the flat (layer-major) order: equal entropies stay in (layer, index) order.
    order = torch.sort(ranked, stable=True).indices
    n_selected = min(selected_count(n_layers * n_neurons, top_rate), int(candidate.sum()))
    chosen = order[:n_selected]
    layers, indices = chosen // n_neurons, chosen % n_neurons
    chosen_P = P[layers, indices]  # [selected, 6]
    if assign == "lape":
        member = chosen_P > lape_quantile(P, activation_bar_ratio)
    else:
        member = torch.zeros_like(chosen_P, dtype=torch.bool)
        member[torch.arange(n_selected), chosen_P.argmax(-1)] = True
    neurons: dict[str, list[list[int]]] = {}
    per_layer: dict[str, list[int]] = {}
    for e, emotion in enumerate(EMOTIONS):
        rows = member[:, e]
        pairs = sorted(zip(layers[rows].tolist(), indices[rows].tolist()))
        neurons[emotion] = [[layer, index] for layer, index in pairs]
        per_layer[emotion] = torch.bincount(layers[rows], minlength=n_layers).tolist()
    threshold = float(entropy.flatten()[chosen].max()) if n_selected else None
    return Selection(
        neurons=neurons,
        entropy_threshold=threshold,
        selected=n_selected,
        per_emotion={emotion: len(pairs) for emotion, pairs in neurons.items()},
        per_layer=per_layer,
    )
