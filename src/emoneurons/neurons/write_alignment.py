"""Do an emotion's neurons write along that emotion's direction? Cosines between each neuron's
write direction (model/architecture.py:write_directions, down_proj's column) and the emotion's
residual-stream direction at the neuron's layer (neurons/direction_geometry.py), summarised per
emotion and set against random neurons drawn like the emotion's; pure, no model.

Two summaries of a set S of neurons for emotion e (the mean over S's neurons (l, i)):
- `abs_cos`: |cos(w_li, d_le)|, how aligned the column is with the direction, whichever way;
- `signed_cos`: sign(v_lie) * cos(w_li, d_le), v_lie the neuron's mean value on e's tokens (its
  down_proj input): on e's tokens the neuron adds v_lie * w_li, so a positive value says it pushes
  the residual towards e's direction there, a negative one away from it.
Beside it, `other_emotions`: the same neurons' summaries against each other emotion's direction
(with their values' signs on that emotion's tokens), averaged over the five: is the alignment
with their own emotion's direction, or with emotion directions at large?
The null: `draws` control sets, each the same number of neurons per layer as S, drawn by a
control draw (the same layers, the emotion's own neurons excluded; `matched`: also the same
within-layer quantile bins of P(active) as S, neurons/matched_controls.py, the null that matches
what selection conditions on; `uniform`: uniformly), summarised the same way. p = (1 + draws whose summary >= S's) /
(1 + draws), one-sided (more aligned than the controls); `aligned` when p <= alpha / 6
(Bonferroni over the six emotions); the smallest p the draws can give is 1 / (1 + draws).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from emoneurons.emotions import EMOTIONS
from emoneurons.neurons.masking import neurons_by_layer
from emoneurons.neurons.matched_controls import activity_matched_neurons
from emoneurons.params import ControlKind, allowed_values

ALPHA = 0.05  # family-wise, over the six emotions


class ControlDraw(Protocol):
    """One control set like `chosen` ({layer: indices}): the same count per layer, none of `exclude`."""

    def __call__(self, p_active: Tensor, chosen: Mapping[int, Tensor], *, exclude: Mapping[int, Tensor],
                 generator: torch.Generator) -> dict[int, Tensor]: ...


def uniform_same_layer(p_active: Tensor, chosen: Mapping[int, Tensor], *, exclude: Mapping[int, Tensor],
                       generator: torch.Generator) -> dict[int, Tensor]:
    """As many neurons per layer as `chosen` has, uniformly among the layer's neurons not in `exclude`."""
    drawn = {}
    for layer, idx in sorted(chosen.items()):
        allowed = torch.ones(p_active.shape[1], dtype=torch.bool)
        if layer in exclude:
            allowed[exclude[layer]] = False
        pool = allowed.nonzero().squeeze(1)
        drawn[layer] = pool[torch.randperm(pool.numel(), generator=generator)[: idx.numel()]].sort().values
    return drawn


def activity_matched(bins: int) -> ControlDraw:
    """The activity-matched draw (neurons/matched_controls.py: the same count per layer and the
    same within-layer quantile bins of P(active), in `bins` bins) as a ControlDraw."""
    def draw(p_active: Tensor, chosen: Mapping[int, Tensor], *, exclude: Mapping[int, Tensor],
             generator: torch.Generator) -> dict[int, Tensor]:
        drawn = activity_matched_neurons(p_active, _pairs(chosen), exclude=_pairs(exclude), bins=bins, generator=generator)
        return neurons_by_layer(drawn)

    return draw


def control_draw_of(kind: ControlKind, bins: int) -> ControlDraw:
    """The draw of a control kind (params.ControlKind, mask-eval's names): `matched` in `bins`
    P(active) quantile bins, or `uniform` over the same layers."""
    if kind == "matched":
        return activity_matched(bins)
    if kind == "uniform":
        return uniform_same_layer
    raise ValueError(f"control kind {kind!r}: allowed: {allowed_values(ControlKind)}")


def _pairs(neurons: Mapping[int, Tensor]) -> list[tuple[int, int]]:
    return [(int(layer), int(i)) for layer, idx in sorted(neurons.items()) for i in idx.tolist()]


def draw_seed(seed: int, name: str) -> int:
    """A stable 63-bit seed from directions.seed and a name (not Python's salted hash)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big") >> 1


def write_cosines(write: Sequence[Tensor], directions: Tensor) -> Tensor:
    """cos [layers, 6, neurons] float64 between each neuron's write direction (write[l]: [neurons,
    hidden]) and each emotion's direction at its layer (directions [layers, 6, hidden]); 0 where
    either vector is zero."""
    out = []
    for layer, columns in enumerate(write):
        w = columns.to(torch.float64)
        d = directions[layer].to(torch.float64)
        dots = d @ w.T  # [6, neurons]
        norms = d.norm(dim=1)[:, None] * w.norm(dim=1)[None, :]
        out.append(torch.where(norms > 0, dots / norms.clamp_min(torch.finfo(torch.float64).tiny), 0.0))
    return torch.stack(out)


def set_summary(cos: Tensor, signs: Tensor, neurons: Mapping[int, Tensor], emotion: int) -> tuple[float, float]:
    """(abs_cos, signed_cos) of one set {layer: indices} for one emotion (module docstring)."""
    picked_cos = torch.cat([cos[layer, emotion, idx] for layer, idx in sorted(neurons.items())])
    picked_sign = torch.cat([signs[layer, emotion, idx] for layer, idx in sorted(neurons.items())])
    return float(picked_cos.abs().mean()), float((picked_sign * picked_cos).mean())


@dataclass(frozen=True)
class Alignment:
    """One emotion's neurons against `draws` control sets, both summaries."""

    emotion: str
    neurons: int
    observed: dict[str, float]  # abs_cos, signed_cos of the emotion's neurons
    other_emotions: dict[str, float]  # the same neurons against the other five emotions' directions (mean)
    control_mean: dict[str, float]
    control_sd: dict[str, float]
    control_interval: dict[str, tuple[float, float]]  # the draws' 2.5% and 97.5% quantiles
    p: dict[str, float]
    draws: int

    @property
    def aligned(self) -> dict[str, bool]:
        return {key: p <= ALPHA / len(EMOTIONS) for key, p in self.p.items()}

    def record(self) -> dict:
        return {"neurons": self.neurons, "draws": self.draws, "observed": self.observed, "other_emotions": self.other_emotions,
                "control_mean": self.control_mean, "control_sd": self.control_sd,
                "control_interval": {k: list(v) for k, v in self.control_interval.items()}, "p": self.p,
                "aligned": self.aligned}


SUMMARIES = ("abs_cos", "signed_cos")


def _interval(null: Tensor) -> tuple[float, float]:
    """The 2.5% and 97.5% quantiles of the draws' summaries (linear interpolation; NaN without draws)."""
    if not null.numel():
        return (float("nan"), float("nan"))
    low, high = torch.quantile(null, torch.tensor([0.025, 0.975], dtype=null.dtype))
    return (float(low), float(high))


def emotion_alignment(cos: Tensor, values: Tensor, p_active: Tensor, selected: Mapping[str, Mapping[int, Tensor]], *,
                      draws: int, seed: int, control_draw: ControlDraw) -> dict[str, Alignment]:
    """Each emotion with neurons in `selected` ({emotion: {layer: indices}}) against `draws`
    control sets of its own (seeded by `seed` and the emotion). `values` [layers, 6, neurons]:
    the neurons' value sums per emotion (only their signs are used)."""
    signs = torch.sign(values.to(torch.float64))
    out = {}
    for emotion, neurons in selected.items():
        neurons = {layer: idx for layer, idx in neurons.items() if idx.numel()}
        if not neurons:
            continue
        e = EMOTIONS.index(emotion)
        observed = dict(zip(SUMMARIES, set_summary(cos, signs, neurons, e)))
        others = torch.tensor([set_summary(cos, signs, neurons, o) for o in range(len(EMOTIONS)) if o != e])
        generator = torch.Generator().manual_seed(draw_seed(seed, f"directions-{emotion}"))
        null = torch.tensor([set_summary(cos, signs, control_draw(p_active, neurons, exclude=neurons, generator=generator), e)
                             for _ in range(draws)], dtype=torch.float64).reshape(draws, len(SUMMARIES))
        out[emotion] = Alignment(
            emotion=emotion,
            neurons=sum(int(idx.numel()) for idx in neurons.values()),
            observed=observed,
            other_emotions={k: float(others[:, j].mean()) for j, k in enumerate(SUMMARIES)},
            control_mean={k: float(null[:, j].mean()) if draws else float("nan") for j, k in enumerate(SUMMARIES)},
            control_sd={k: float(null[:, j].std()) if draws > 1 else float("nan") for j, k in enumerate(SUMMARIES)},
            control_interval={k: _interval(null[:, j]) for j, k in enumerate(SUMMARIES)},
            p={k: (1 + int((null[:, j] >= observed[k]).sum())) / (1 + draws) for j, k in enumerate(SUMMARIES)},
            draws=draws,
        )
    return out
