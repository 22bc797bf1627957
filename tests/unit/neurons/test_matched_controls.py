"""Activity-matched draws (neurons/matched_controls.py) against a brute-force reading of the rule:
bins by plain sorting and counting, eligibility by listing, inclusion frequencies by exact counting."""

from __future__ import annotations

import random

import pytest
import torch

from emoneurons.neurons.matched_controls import activity_matched_neurons
from emoneurons.neurons.selection import overall_activation_probability

LAYERS, NEURONS, BINS = 3, 40, 5


def brute_bins(values: list[float], bins: int) -> dict[int, int]:
    """index -> bin: rank by (value, index), equal-count bins, by plain Python."""
    ranked = sorted(range(len(values)), key=lambda i: (values[i], i))
    return {index: (rank * bins) // len(values) for rank, index in enumerate(ranked)}


def bin_ranges(values: list[float], bins: int) -> dict[int, tuple[float, float]]:
    bin_of = brute_bins(values, bins)
    ranges: dict[int, tuple[float, float]] = {}
    for index, b in bin_of.items():
        lo, hi = ranges.get(b, (values[index], values[index]))
        ranges[b] = (min(lo, values[index]), max(hi, values[index]))
    return ranges


def activity(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    p = torch.rand(LAYERS, NEURONS, generator=generator, dtype=torch.float64)
    p[1, :6] = 0.25  # ties: ranked by index
    return p


def busiest(p: torch.Tensor, layer: int, n: int) -> list[tuple[int, int]]:
    return [(layer, int(i)) for i in p[layer].argsort(descending=True)[:n]]


def draw(p, chosen, exclude=(), seed=0, bins=BINS):
    return activity_matched_neurons(p, chosen, exclude=exclude, bins=bins, generator=torch.Generator().manual_seed(seed))


def test_overall_activation_probability_is_all_firings_over_all_tokens():
    f = torch.randint(0, 50, (2, 4, 6))
    T = torch.tensor([50, 60, 70, 80, 90, 100])
    p = overall_activation_probability(f, T)
    for layer in range(2):
        for neuron in range(4):
            expected = sum(int(f[layer, neuron, e]) for e in range(6)) / sum(int(t) for t in T)
            assert p[layer, neuron].item() == pytest.approx(expected, rel=1e-15)
    with pytest.raises(ValueError, match="no counted tokens"):
        overall_activation_probability(f, torch.zeros(6, dtype=torch.long))


def test_same_count_per_layer_same_bins_none_excluded_and_activity_within_the_bin_width():
    p = activity()
    chosen = busiest(p, 0, 4) + [(2, 3), (2, 17), (2, 30)] + busiest(p, 1, 2)
    exclude = set(chosen) | {(0, int(i)) for i in p[0].argsort(descending=True)[10:13]}
    for seed in range(20):
        control = draw(p, chosen, exclude, seed)
        assert control == sorted(control) and len(set(control)) == len(control)
        assert not set(control) & exclude
        for layer in range(LAYERS):
            values = p[layer].tolist()
            bin_of = brute_bins(values, BINS)
            mine = sorted(bin_of[i] for l, i in chosen if l == layer)
            theirs = sorted(bin_of[i] for l, i in control if l == layer)
            assert mine == theirs  # same quantile-bin multiset: no bin ran out here
            ranges = bin_ranges(values, BINS)
            width = max(hi - lo for lo, hi in ranges.values())
            a = sorted(values[i] for l, i in chosen if l == layer)
            b = sorted(values[i] for l, i in control if l == layer)
            assert all(abs(x - y) <= width for x, y in zip(a, b))


def test_each_free_neuron_of_the_bin_is_equally_likely():
    """Inclusion frequencies over many seeds against the exact k / free of a uniform draw in the bin."""
    p = activity()
    chosen = busiest(p, 0, 3)
    exclude = set(chosen) | set(busiest(p, 0, 4)[3:])
    values = p[0].tolist()
    bin_of = brute_bins(values, BINS)
    top = bin_of[chosen[0][1]]
    assert all(bin_of[i] == top for _, i in chosen)
    free = [i for i in range(NEURONS) if bin_of[i] == top and (0, i) not in exclude]
    draws = 3000
    seen = {i: 0 for i in range(NEURONS)}
    for seed in range(draws):
        for _, i in draw(p, chosen, exclude, seed):
            seen[i] += 1
    expected = draws * len(chosen) / len(free)
    for i in range(NEURONS):
        if i in free:
            assert abs(seen[i] - expected) < 5 * (expected * (1 - len(chosen) / len(free))) ** 0.5
        else:
            assert seen[i] == 0


def test_a_bin_that_runs_out_spills_to_the_nearest_bins_lower_first():
    p = activity()
    values = p[2].tolist()
    bin_of = brute_bins(values, BINS)
    top_bin = [i for i in range(NEURONS) if bin_of[i] == BINS - 1]
    chosen = [(2, i) for i in top_bin[:5]]
    exclude = {(2, i) for i in top_bin}  # the whole top bin: every draw spills
    nearer = [i for i in range(NEURONS) if bin_of[i] == BINS - 2]
    for seed in range(10):
        control = draw(p, chosen, exclude, seed)
        assert len(control) == 5 and all(i in nearer for _, i in control)
    # A middle bin emptied: distance 1 below first, then above, then distance 2.
    middle = [i for i in range(NEURONS) if bin_of[i] == 2]
    below = [i for i in range(NEURONS) if bin_of[i] == 1]
    above = [i for i in range(NEURONS) if bin_of[i] == 3]
    chosen = [(2, i) for i in middle]
    control = draw(p, chosen, {(2, i) for i in middle}, 0)
    assert len(control) == len(middle) <= len(below)
    assert all(bin_of[i] == 1 for _, i in control)  # the lower neighbour had room for all
    # Lower neighbour too small: the rest from the upper one.
    exclude = {(2, i) for i in middle} | {(2, i) for i in below[2:]}
    control = draw(p, chosen, exclude, 0)
    assert sorted(bin_of[i] for _, i in control) == sorted([1, 1] + [3] * (len(middle) - 2))
    assert all(i in below[:2] or i in above for _, i in control)


def test_a_layer_without_enough_free_neurons_is_an_error():
    p = activity()
    chosen = [(1, i) for i in range(30)]
    with pytest.raises(ValueError, match="layer 1: 30 neurons to match but only 5 of 40"):
        draw(p, chosen, {(1, i) for i in range(35)})
    with pytest.raises(ValueError, match="outside"):
        draw(p, [(3, 0)])
    with pytest.raises(ValueError, match="bins 0"):
        draw(p, [(0, 0)], bins=0)


def test_seeded_and_stable():
    p = activity()
    chosen = busiest(p, 0, 4) + busiest(p, 2, 3)
    assert draw(p, chosen, set(chosen), 7) == draw(p, chosen, set(chosen), 7)
    assert draw(p, chosen, set(chosen), 7) != draw(p, chosen, set(chosen), 8)
    # The chosen set's order does not matter; its layers are drawn in ascending order.
    shuffled = chosen[:]
    random.Random(0).shuffle(shuffled)
    assert draw(p, shuffled, set(chosen), 7) == draw(p, chosen, set(chosen), 7)


def test_busy_neurons_get_busy_controls_unlike_a_uniform_draw():
    """The point of the null: the matched control's mean P(active) is the set's within a bin's
    width, a uniform draw's is the layer's mean."""
    p = activity(1)
    chosen = [pair for layer in range(LAYERS) for pair in busiest(p, layer, 4)]
    control = draw(p, chosen, set(chosen), 0)
    mean = lambda pairs: sum(p[l, i].item() for l, i in pairs) / len(pairs)  # noqa: E731
    width = max(hi - lo for layer in range(LAYERS) for lo, hi in bin_ranges(p[layer].tolist(), BINS).values())
    assert abs(mean(control) - mean(chosen)) <= width
    assert mean(chosen) - p.mean().item() > 0.3
