"""Emotion directions in the residual stream and their geometry, from the class sums
(neurons/directions.py); pure functions of tensors, no model.

- class mean mu[l, e] = hidden[l, e] / tokens[e] (the mean residual over e's summed tokens);
  overall mean mu[l] = the mean over all summed tokens (every emotion's, weighted by its tokens);
  direction d[l, e] = mu[l, e] - mu[l] (raw residual units: what a neuron's write is compared with).
- per dimension k of the residual, between[l, k] = sum_e tokens[e] (mu[l, e, k] - mu[l, k])^2 and
  within[l, k] = sum_e (squares[l, e, k] - tokens[e] mu[l, e, k]^2), sums over tokens.
  separation[l] = the mean over dimensions of between / within: the between- to within-class
  variance ratio with each dimension in units of its own within-class spread. Unstandardised, a
  few dimensions with huge values on a few tokens (massive activations, SmolLM2's middle layers)
  would make both sums and hide every other dimension. The layer of strongest separation is its
  argmax (the first on a tie). Dimensions without within-class spread are left out.
- PCA of the six class means at a layer, in the same standardised units (each dimension divided
  by its pooled within-class standard deviation): the means centred on their plain average (each
  emotion counts once), principal axes by SVD; explained variance of PC1 and PC2 as shares of
  the six points' total variance; each emotion's coordinates. Signs: PC1 points to happiness
  (its coordinate >= 0), PC2 to its largest-magnitude coordinate.
- valence rule: PC1 is a valence axis when happiness lies beyond every negative emotion (anger,
  disgust, fear, sadness) on it and apart from them: margin = (happiness - the highest negative)
  / (the highest negative - the lowest negative) >= 1, i.e. happiness is farther from the
  nearest negative emotion than the four negatives are spread among themselves (surprise may sit
  anywhere; where it sits is reported). Beside it: Pearson's r between PC1 and the valence codes
  happiness +1, surprise 0, the four negatives -1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from emoneurons.emotions import EMOTION_INDEX, EMOTIONS

NEGATIVE = ("anger", "disgust", "fear", "sadness")
VALENCE_CODE = {"happiness": 1.0, "surprise": 0.0, **{e: -1.0 for e in NEGATIVE}}


def class_means(hidden: Tensor, tokens: Tensor) -> Tensor:
    """mu [layers, 6, hidden] float64; every emotion needs summed tokens."""
    if int(tokens.min()) <= 0:
        empty = [EMOTIONS[e] for e in range(len(EMOTIONS)) if int(tokens[e]) <= 0]
        raise ValueError(f"no summed tokens for emotion(s) {', '.join(empty)}: its class mean is undefined")
    return hidden.to(torch.float64) / tokens.to(torch.float64)[None, :, None]


def overall_mean(hidden: Tensor, tokens: Tensor) -> Tensor:
    """[layers, hidden]: the mean over all summed tokens."""
    return hidden.to(torch.float64).sum(1) / float(tokens.sum())


def emotion_directions(hidden: Tensor, tokens: Tensor) -> Tensor:
    """d [layers, 6, hidden] = each emotion's class mean minus the overall mean."""
    return class_means(hidden, tokens) - overall_mean(hidden, tokens)[:, None, :]


def between_within(hidden: Tensor, squares: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Per layer and dimension [layers, hidden]: the between-class and within-class sums of squares
    over tokens (module docstring); squares [layers, 6, hidden] are the per-dimension sums of h^2."""
    means = class_means(hidden, tokens)
    n = tokens.to(torch.float64)[None, :, None]
    between = (n * (means - overall_mean(hidden, tokens)[:, None, :]).pow(2)).sum(1)
    within = (squares.to(torch.float64) - n * means.pow(2)).sum(1)
    return between, within


def _spread(within: Tensor) -> Tensor:
    """Which dimensions have within-class spread (not zero up to float64 rounding of the sums)."""
    return within > within.abs().amax(-1, keepdim=True) * 1e-12


def separation(hidden: Tensor, squares: Tensor, tokens: Tensor) -> Tensor:
    """[layers] the mean over dimensions of between / within (module docstring)."""
    between, within = between_within(hidden, squares, tokens)
    spread = _spread(within)
    ratio = torch.where(spread, between / within.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    return ratio.sum(-1) / spread.sum(-1).clamp_min(1)


def standardized_means(hidden: Tensor, squares: Tensor, tokens: Tensor) -> Tensor:
    """[layers, 6, hidden] class means with each dimension divided by its pooled within-class
    standard deviation (sqrt(within / (tokens - 6))); dimensions without spread set to 0."""
    _, within = between_within(hidden, squares, tokens)
    spread = _spread(within)
    sd = (within / max(float(tokens.sum()) - len(EMOTIONS), 1.0)).clamp_min(torch.finfo(torch.float64).tiny).sqrt()
    return torch.where(spread[:, None, :], class_means(hidden, tokens) / sd[:, None, :], 0.0)


@dataclass(frozen=True)
class Geometry:
    """The six class means' PCA at one layer and the valence verdict on it."""

    layer: int
    explained: tuple[float, float]  # PC1, PC2 shares of the six means' variance
    coordinates: dict[str, tuple[float, float]]  # emotion -> (PC1, PC2)
    valence_axis: bool  # the rule: happiness beyond all four negatives on PC1, margin >= 1
    valence_margin: float  # (happiness - highest negative) / (highest - lowest negative) on PC1
    valence_r: float  # Pearson r of PC1 with the valence codes
    pc2_valence_axis: bool  # the same rule on PC2 (signed to happiness)
    surprise_between: bool  # surprise's PC1 between the negatives' largest and happiness

    def record(self) -> dict:
        return {
            "layer": self.layer,
            "explained_variance": {"pc1": self.explained[0], "pc2": self.explained[1]},
            "coordinates": {e: {"pc1": c[0], "pc2": c[1]} for e, c in self.coordinates.items()},
            "valence": {"pc1_is_valence": self.valence_axis, "margin": self.valence_margin, "r": self.valence_r,
                        "pc2_is_valence": self.pc2_valence_axis, "surprise_between": self.surprise_between},
        }


MIN_MARGIN = 1.0


def valence_margin(coordinate: Tensor) -> float:
    """(happiness - the highest negative) / (the highest - the lowest negative) on one axis;
    +inf when the negatives coincide and happiness is above them."""
    negatives = [float(coordinate[EMOTION_INDEX[e]]) for e in NEGATIVE]
    gap, spread = float(coordinate[EMOTION_INDEX["happiness"]]) - max(negatives), max(negatives) - min(negatives)
    return gap / spread if spread > 0 else (math.inf if gap > 0 else -math.inf)


def _is_valence(coordinate: Tensor) -> bool:
    return valence_margin(coordinate) >= MIN_MARGIN


def principal_axes(points: Tensor) -> tuple[Tensor, Tensor]:
    """Coordinates [n, k] of `points` [n, dim] on their principal axes (centred on their mean) and
    each axis's share of the total variance [k] (k = min(n, dim))."""
    centred = points.to(torch.float64) - points.to(torch.float64).mean(0, keepdim=True)
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    total = float((s * s).sum())
    share = (s * s) / total if total > 0 else torch.zeros_like(s)
    return u * s, share


def means_geometry(means: Tensor, layer: int) -> Geometry:
    """PCA of the six class means [6, hidden] at `layer` (standardized_means) and the valence
    verdict (module docstring)."""
    coordinates, share = principal_axes(means)
    pc1, pc2 = coordinates[:, 0].clone(), coordinates[:, 1].clone()
    if pc1[EMOTION_INDEX["happiness"]] < 0:
        pc1 = -pc1
    if pc2[pc2.abs().argmax()] < 0:
        pc2 = -pc2
    valence = torch.tensor([VALENCE_CODE[e] for e in EMOTIONS], dtype=torch.float64)
    r = float(torch.corrcoef(torch.stack([pc1, valence]))[0, 1])
    happy2 = pc2 if pc2[EMOTION_INDEX["happiness"]] >= 0 else -pc2
    negatives_top = max(float(pc1[EMOTION_INDEX[e]]) for e in NEGATIVE)
    surprise = float(pc1[EMOTION_INDEX["surprise"]])
    return Geometry(
        layer=layer,
        explained=(float(share[0]), float(share[1])),
        coordinates={e: (float(pc1[i]), float(pc2[i])) for i, e in enumerate(EMOTIONS)},
        valence_axis=_is_valence(pc1),
        valence_margin=valence_margin(pc1),
        valence_r=r,
        pc2_valence_axis=_is_valence(happy2),
        surprise_between=negatives_top < surprise < float(pc1[EMOTION_INDEX["happiness"]]),
    )
