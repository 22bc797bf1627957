"""Which masks mask-eval runs: unmodified; RQ2 (each emotion's neurons at select.top_rate, all
layers); RQ3 (each ratio x emotion, all layers; each layer range x emotion at top_rate); and, for
every masked condition, `eval.control_draws` random sets of the same size per layer.

A control draws, in every layer that holds n of the masked set's neurons, n indices uniformly
without replacement from all of that layer's neurons; it excludes nothing, so a control may hit
some of the emotion's own neurons (as often as chance does). Draws are seeded by eval.seed and the
condition's id, so they do not move when other conditions are added or removed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from emoneurons.emotions import EMOTIONS
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.neurons.masking import LAYER_RANGES, layer_span, neurons_by_layer, restrict_layers
from emoneurons.params import EvalParams, ratio_key


class PlanError(ValueError):
    """neurons.json and the eval params do not fit together, said in one line."""


@dataclass(frozen=True)
class Condition:
    id: str
    kind: str  # unmodified | mask | control
    masked: str | None
    ratio: float | None
    layers: str | None
    draw: int | None
    neurons: dict[int, Tensor] = field(compare=False, repr=False)

    @property
    def control(self) -> bool:
        return self.kind == "control"

    @property
    def n_neurons(self) -> int:
        return sum(int(idx.numel()) for idx in self.neurons.values())

    @property
    def mask_key(self) -> tuple[tuple[int, tuple[int, ...]], ...]:
        """What the mask is: equal keys give equal results, so they are computed once."""
        return tuple((layer, tuple(idx.tolist())) for layer, idx in sorted(self.neurons.items()) if idx.numel())

    def record(self) -> dict:
        """The descriptive fields of eval.json's condition entries."""
        return {"id": self.id, "kind": self.kind, "masked": self.masked, "ratio": self.ratio, "layers": self.layers,
                "control": self.control, "draw": self.draw, "n_neurons": self.n_neurons}


def mask_id(emotion: str, ratio: float, layers: str) -> str:
    return f"mask-{emotion}-r{ratio_key(ratio)}-{layers}"


def control_id(mask: str, draw: int) -> str:
    """The id of random-neuron control `draw` of the masked condition `mask`."""
    return f"control{mask.removeprefix('mask')}-d{draw}"


def control_seed(seed: int, condition_id: str) -> int:
    """A stable 63-bit seed from eval.seed and a condition id (not Python's salted hash)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{condition_id}".encode()).digest()[:8], "big") >> 1


def random_like(neurons: Mapping[int, Tensor], neurons_per_layer: int, seed: int) -> dict[int, Tensor]:
    """As many neurons per layer as `neurons` has, drawn uniformly without replacement."""
    generator = torch.Generator().manual_seed(seed)
    drawn = {}
    for layer, idx in sorted(neurons.items()):
        pick = torch.randperm(neurons_per_layer, generator=generator)[: idx.numel()]
        drawn[layer] = pick.sort().values
    return drawn


def validate_plan(neurons: NeuronsFile, eval_params: EvalParams, top_rate: float, n_layers: int) -> None:
    """Raise PlanError, or NoSelectionError for a missing ratio (one line), before any work when the
    plan cannot be run."""
    for ratio in (top_rate, *eval_params.ratios):
        neurons.selection(ratio)
    if neurons.layers != n_layers:
        raise PlanError(f"{neurons.source}: selected on a {neurons.layers}-layer model, "
                        f"the model has {n_layers} layers; rerun count and select for this model")
    for name in eval_params.layer_ranges:
        if len(layer_span(n_layers, name)) == 0:
            raise PlanError(f"eval.layer_ranges: {name!r} is empty for a {n_layers}-layer model; "
                            f"allowed here: {', '.join(r for r in LAYER_RANGES if len(layer_span(n_layers, r)))}")


def plan_conditions(neurons: NeuronsFile, eval_params: EvalParams, top_rate: float, n_layers: int) -> list[Condition]:
    """Every condition once by id, in report order: unmodified, RQ2, ratio sweep, layer sweep,
    then the controls. Conditions with equal masks stay separate here (see `unique_masks`)."""
    validate_plan(neurons, eval_params, top_rate, n_layers)
    per_layer = neurons.neurons_per_layer
    sets = {key: {e: neurons_by_layer(pairs) for e, pairs in sel.neurons.items()} for key, sel in neurons.ratios.items()}
    wanted: list[tuple[float, str]] = [(top_rate, "all")]
    wanted += [(ratio, "all") for ratio in eval_params.ratios]
    wanted += [(top_rate, name) for name in eval_params.layer_ranges]
    plan = [Condition("unmodified", "unmodified", None, None, None, None, {})]
    seen = {"unmodified"}
    masked = []
    for ratio, layers in wanted:
        for emotion in EMOTIONS:
            cid = mask_id(emotion, ratio, layers)
            if cid in seen:
                continue
            seen.add(cid)
            neurons = restrict_layers(sets[ratio_key(ratio)].get(emotion, {}), layer_span(n_layers, layers))
            masked.append(Condition(cid, "mask", emotion, ratio, layers, None, neurons))
    controls = [
        Condition(control_id(c.id, draw), "control", c.masked, c.ratio, c.layers, draw,
                  random_like(c.neurons, per_layer, control_seed(eval_params.seed, f"{c.id}-d{draw}")))
        for c in masked for draw in range(eval_params.control_draws)
    ]
    return plan + masked + controls


def unique_masks(conditions: list[Condition]) -> dict[tuple, list[Condition]]:
    """Conditions grouped by mask (insertion order): each group is computed once."""
    groups: dict[tuple, list[Condition]] = {}
    for condition in conditions:
        groups.setdefault(condition.mask_key, []).append(condition)
    return groups


def first_masked_layers(conditions: list[Condition]) -> set[int]:
    """The lowest masked layer of every condition: where layer reuse can start."""
    return {min(c.neurons) for c in conditions if c.mask_key}
