"""Activity-matched random neurons: the null that matches what selection conditions on.

LAPE only considers neurons whose activation probability clears a high quantile, so an emotion's
selected neurons are among the busiest of their layers; a uniform draw from the same layers is
mostly quiet neurons, and zeroing a busy neuron moves the model more than zeroing a quiet one.
`activity_matched_neurons` draws, in every layer, as many neurons as the chosen set has there,
with the same distribution of P(active) (selection.overall_activation_probability: over all
counted tokens, every emotion's together).

The rule. In each layer the neurons are ranked by P(active), ties by index (a stable sort), and
cut into `bins` quantile bins of (nearly) equal size: neuron of rank r (0-based) of N is in bin
floor(r * bins / N). For every chosen neuron one neuron of its own bin is drawn, uniformly without
replacement among the bin's neurons that are neither in `exclude` nor chosen (the set itself)
nor drawn already. When a bin runs out (more chosen neurons in it than it has free ones), the
shortfall is drawn from the nearest bins that still have free neurons: distance 1 first, the
lower bin before the higher at equal distance, then distance 2, and so on; so a control of the
busiest neurons spills into the next busiest, never further than it must. A layer with fewer free
neurons than chosen ones is an error (nothing can be drawn honestly there).

Draw order, for a fixed generator state: layers ascending; in each layer first every bin's own
draw (bins ascending: one `torch.randperm` of the bin's free neurons, sorted by index), then the
shortfalls (bins ascending, each spill bin's remaining free neurons permuted the same way).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch


def quantile_bins(p_active_layer: torch.Tensor, bins: int) -> torch.Tensor:
    """[neurons] long: each neuron's within-layer quantile bin of P(active) (0 = least active),
    rank r of N (ties by index) in bin floor(r * bins / N)."""
    n = p_active_layer.numel()
    order = torch.sort(p_active_layer, stable=True).indices
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    return rank * bins // n


def _permuted(pool: list[int], generator: torch.Generator) -> list[int]:
    return [pool[i] for i in torch.randperm(len(pool), generator=generator).tolist()]


def _spill_order(bin_index: int, bins: int) -> list[int]:
    """The other bins, nearest first, the lower before the higher at equal distance."""
    order = []
    for distance in range(1, bins):
        order += [b for b in (bin_index - distance, bin_index + distance) if 0 <= b < bins]
    return order


def _draw_layer(p_layer: torch.Tensor, chosen: list[int], excluded: set[int], bins: int,
                generator: torch.Generator, layer: int) -> list[int]:
    bin_of = quantile_bins(p_layer, bins)
    free_mask = torch.ones(p_layer.numel(), dtype=torch.bool)
    blocked = sorted(excluded | set(chosen))
    free_mask[blocked] = False
    available = int(free_mask.sum())
    if available < len(chosen):
        raise ValueError(f"layer {layer}: {len(chosen)} neurons to match but only {available} of "
                         f"{p_layer.numel()} are neither excluded nor chosen")
    # Each bin's free neurons in index order, listed only for the bins a draw touches (tensor ops,
    # not a Python loop over the layer: a layer has up to tens of thousands of neurons).
    pools: dict[int, list[int]] = {}

    def pool(b: int) -> list[int]:
        if b not in pools:
            pools[b] = torch.nonzero(free_mask & (bin_of == b)).flatten().tolist()
        return pools[b]

    demand = torch.bincount(bin_of[chosen], minlength=bins).tolist()
    drawn: list[int] = []
    shortfall = [0] * bins
    for b in range(bins):
        if not demand[b]:
            continue
        picked = _permuted(pool(b), generator)[: demand[b]]
        drawn += picked
        pools[b] = sorted(set(pools[b]) - set(picked))
        shortfall[b] = demand[b] - len(picked)
    for b in (b for b in range(bins) if shortfall[b]):
        for spill in _spill_order(b, bins):
            if not shortfall[b]:
                break
            if not pool(spill):
                continue
            picked = _permuted(pools[spill], generator)[: shortfall[b]]
            drawn += picked
            pools[spill] = sorted(set(pools[spill]) - set(picked))
            shortfall[b] -= len(picked)
    return drawn


def activity_matched_neurons(
    p_active: torch.Tensor,
    chosen: Sequence[tuple[int, int]],
    *,
    exclude: Collection[tuple[int, int]],
    bins: int,
    generator: torch.Generator,
) -> list[tuple[int, int]]:
    """Random (layer, index) pairs matching `chosen` per layer in count and in P(active) quantile
    bin (the module's rule), none in `exclude` or `chosen`; sorted by (layer, index).
    `p_active` [layers, neurons]: each neuron's P(active) over all train tokens."""
    if p_active.dim() != 2:
        raise ValueError(f"p_active must be [layers, neurons], got {list(p_active.shape)}")
    n_layers, n_neurons = p_active.shape
    if not 1 <= bins <= n_neurons:
        raise ValueError(f"bins {bins}: allowed: 1 to the neurons per layer ({n_neurons})")
    per_layer: dict[int, list[int]] = {}
    for layer, index in chosen:
        if not (0 <= layer < n_layers and 0 <= index < n_neurons):
            raise ValueError(f"neuron ({layer}, {index}) is outside p_active's {n_layers} x {n_neurons}")
        per_layer.setdefault(int(layer), []).append(int(index))
    excluded: dict[int, set[int]] = {}
    for layer, index in exclude:
        excluded.setdefault(int(layer), set()).add(int(index))
    drawn = []
    p = p_active.detach().to("cpu", torch.float64)
    for layer in sorted(per_layer):
        indices = per_layer[layer]
        if len(set(indices)) != len(indices):
            raise ValueError(f"layer {layer}: a neuron is listed twice in the set to match")
        drawn += [(layer, i) for i in _draw_layer(p[layer], indices, excluded.get(layer, set()), bins, generator, layer)]
    return sorted(drawn)
