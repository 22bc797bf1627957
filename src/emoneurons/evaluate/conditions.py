"""Which masks mask-eval runs: unmodified; RQ2 (each emotion's neurons at select.top_rate, all
layers); RQ3 (each ratio x emotion, all layers; each layer range x emotion at top_rate); for every
masked condition, `eval.control_draws` random sets of each kind in `eval.controls`; and with
`eval.scales`, the RQ2 masks and their controls of the verdict's null kind (the first of
eval.controls) graded: activations multiplied by each factor instead of zeroed.

Two kinds of control, both with as many neurons in each layer as the masked set has there:
- uniform (kind `control`): n indices drawn uniformly without replacement from all of the layer's
  neurons; it excludes nothing, so it may hit some of the emotion's own neurons (as often as chance does);
- matched (kind `matched`): the same P(active) quantile bins as the set, never the set's own
  neurons (neurons/matched_controls.py; P(active) over all train tokens, from count's f and T).
Draws are seeded by eval.seed and the condition's id, so they do not move when other conditions
are added or removed; a graded condition's controls are its plain mask's (the same neurons).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from emoneurons.emotions import EMOTIONS
from emoneurons.errors import EmoneuronsError
from emoneurons.io.eval_file import CONTROL_CONDITION_KIND
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.neurons.masking import LAYER_RANGES, layer_span, neurons_by_layer, restrict_layers
from emoneurons.neurons.matched_controls import activity_matched_neurons
from emoneurons.params import ControlKind, EvalParams, ratio_key


class PlanError(EmoneuronsError, ValueError):
    """neurons.json and the eval params do not fit together, said in one line."""


@dataclass(frozen=True)
class Condition:
    id: str
    kind: str  # unmodified | mask | control (uniform) | matched
    masked: str | None
    ratio: float | None
    layers: str | None
    draw: int | None
    neurons: dict[int, Tensor] = field(compare=False, repr=False)
    scale: float = 0.0  # the masked neurons' activations are multiplied by this (0: zeroed)

    @property
    def control(self) -> bool:
        return self.kind in CONTROL_CONDITION_KIND.values()

    @property
    def n_neurons(self) -> int:
        return sum(int(idx.numel()) for idx in self.neurons.values())

    @property
    def mask_key(self) -> tuple:
        """What the mask is: equal keys give equal results, so they are computed once."""
        key = tuple((layer, tuple(idx.tolist())) for layer, idx in sorted(self.neurons.items()) if idx.numel())
        return key + (("scale", self.scale),) if key and self.scale else key

    def record(self) -> dict:
        """The descriptive fields of eval.json's condition entries."""
        return {"id": self.id, "kind": self.kind, "masked": self.masked, "ratio": self.ratio, "layers": self.layers,
                "control": self.control, "draw": self.draw, "scale": None if self.kind == "unmodified" else self.scale,
                "n_neurons": self.n_neurons}


def mask_id(emotion: str, ratio: float, layers: str, scale: float = 0.0) -> str:
    """A masked condition's id; a graded one (scale > 0) ends in -s<scale>."""
    return f"mask-{emotion}-r{ratio_key(ratio)}-{layers}" + (f"-s{scale:g}" if scale else "")


def control_id(mask: str, draw: int, kind: ControlKind = "uniform") -> str:
    """The id of control `draw` of kind `kind` of the masked condition `mask`."""
    return f"{CONTROL_CONDITION_KIND[kind]}{mask.removeprefix('mask')}-d{draw}"


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


def needs_activity(eval_params: EvalParams) -> bool:
    """Whether the plan draws matched controls (for conditions or the draw-level null), so needs P(active)."""
    return "matched" in eval_params.controls and bool(eval_params.control_draws or eval_params.null_draws)


def control_neurons(kind: ControlKind, mask: Condition, draw: int, eval_params: EvalParams, neurons_per_layer: int,
                    p_active: Tensor | None) -> dict[int, Tensor]:
    """Control set `draw` of kind `kind` for the plain (scale 0) mask `mask`, seeded by its id."""
    if kind == "uniform":  # the seed's text is the one uniform controls always had
        return random_like(mask.neurons, neurons_per_layer, control_seed(eval_params.seed, f"{mask.id}-d{draw}"))
    if p_active is None:
        raise PlanError("eval.controls: matched controls need P(active) from count's counts (data/counts)")
    pairs = [(layer, int(i)) for layer, idx in mask.neurons.items() for i in idx.tolist()]
    generator = torch.Generator().manual_seed(control_seed(eval_params.seed, f"matched:{mask.id}-d{draw}"))
    drawn = activity_matched_neurons(p_active, pairs, exclude=pairs, bins=eval_params.activity_bins, generator=generator)
    return neurons_by_layer(drawn) if drawn else {}


def validate_plan(neurons: NeuronsFile, eval_params: EvalParams, top_rate: float, n_layers: int,
                  p_active: Tensor | None = None) -> None:
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
    if p_active is not None and tuple(p_active.shape) != (n_layers, neurons.neurons_per_layer):
        raise PlanError(f"data/counts: counts of a {p_active.shape[0]} x {p_active.shape[1]} model, neurons.json's is "
                        f"{n_layers} x {neurons.neurons_per_layer}; rerun count and select for this model")
    if p_active is None and needs_activity(eval_params):
        raise PlanError("eval.controls: matched controls need P(active) from count's counts (data/counts)")


def plan_conditions(neurons: NeuronsFile, eval_params: EvalParams, top_rate: float, n_layers: int,
                    p_active: Tensor | None = None) -> list[Condition]:
    """Every condition once by id, in report order: unmodified, RQ2, ratio sweep, layer sweep,
    the controls (each kind in eval.controls, draw by draw), then the graded RQ2 masks and their
    null-kind controls, scale by scale. Conditions with equal masks stay separate here (see `unique_masks`).
    `p_active` [layers, neurons]: P(active) over all train tokens (needed by matched controls)."""
    validate_plan(neurons, eval_params, top_rate, n_layers, p_active)
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
    drawn = {(kind, c.id, draw): control_neurons(kind, c, draw, eval_params, per_layer, p_active)
             for c in masked for kind in eval_params.controls for draw in range(eval_params.control_draws)}
    controls = [Condition(control_id(c.id, draw, kind), CONTROL_CONDITION_KIND[kind], c.masked, c.ratio, c.layers, draw,
                          drawn[kind, c.id, draw])
                for c in masked for kind in eval_params.controls for draw in range(eval_params.control_draws)]
    graded = []
    null = eval_params.controls[0]  # graded masks get controls of the verdict's null kind only
    for scale in (s for s in eval_params.scales if s):  # scale 0 is the plain mask, planned above
        for c in (m for m in masked if is_rq2(m, top_rate)):
            graded.append(replace(c, id=mask_id(c.masked, c.ratio, c.layers, scale), scale=scale))
            graded += [Condition(control_id(graded[-1].id, draw, null), CONTROL_CONDITION_KIND[null], c.masked, c.ratio,
                                 c.layers, draw, drawn[null, c.id, draw], scale)
                       for draw in range(eval_params.control_draws)]
    return plan + masked + controls + graded


def is_rq2(condition: Condition, top_rate: float) -> bool:
    """The condition masks an emotion's neurons at select.top_rate on all layers (RQ2's masks)."""
    return condition.ratio is not None and ratio_key(condition.ratio) == ratio_key(top_rate) and condition.layers == "all"


def unique_masks(conditions: list[Condition]) -> dict[tuple, list[Condition]]:
    """Conditions grouped by mask (insertion order): each group is computed once."""
    groups: dict[tuple, list[Condition]] = {}
    for condition in conditions:
        groups.setdefault(condition.mask_key, []).append(condition)
    return groups


def first_masked_layers(conditions: list[Condition]) -> set[int]:
    """The lowest masked layer of every condition: where layer reuse can start."""
    return {min(c.neurons) for c in conditions if c.mask_key}
