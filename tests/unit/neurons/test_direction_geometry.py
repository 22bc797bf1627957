"""neurons/direction_geometry.py and neurons/write_alignment.py against slow, obvious numpy
computations on every token's hidden state (directions, separation, PCA by the covariance's
eigenvectors, cosines one neuron at a time, the control p-values counted in a loop)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.neurons.direction_geometry import (
    NEGATIVE,
    emotion_directions,
    means_geometry,
    separation,
    standardized_means,
)
from emoneurons.neurons.matched_controls import activity_matched_neurons, quantile_bins
from emoneurons.neurons.write_alignment import (
    activity_matched,
    control_draw_of,
    draw_seed,
    emotion_alignment,
    uniform_same_layer,
    write_cosines,
)

LAYERS, HIDDEN, NEURONS = 3, 8, 20


def token_states(seed: int = 0):
    """Hidden states of every summed token [layer][emotion] -> [tokens, hidden], a different
    number of tokens per emotion, each emotion shifted by its own offset."""
    rng = np.random.default_rng(seed)
    counts = [5, 9, 3, 12, 7, 4]
    return [[rng.normal(size=(n, HIDDEN)) + rng.normal(scale=2.0, size=HIDDEN) for n in counts] for _ in range(LAYERS)], counts


def sums_of(states, counts):
    hidden = torch.tensor(np.array([[s.sum(0) for s in layer] for layer in states]))
    squares = torch.tensor(np.array([[(s * s).sum(0) for s in layer] for layer in states]))
    return hidden, squares, torch.tensor(counts)


def test_directions_separation_and_standardized_means_equal_numpy_on_all_tokens():
    states, counts = token_states()
    for layer in states:  # one dimension with huge values (massive activations) on a few tokens
        layer[1][:2, 3] += 1e4
    hidden, squares, tokens = sums_of(states, counts)
    directions, ratio = emotion_directions(hidden, tokens), separation(hidden, squares, tokens)
    standardized = standardized_means(hidden, squares, tokens)
    for layer, per_emotion in enumerate(states):
        everything = np.concatenate(per_emotion)
        overall = everything.mean(0)
        between = sum(len(s) * (s.mean(0) - overall) ** 2 for s in per_emotion)  # per dimension
        within = sum(((s - s.mean(0)) ** 2).sum(0) for s in per_emotion)
        np.testing.assert_allclose(ratio[layer].numpy(), np.mean(between / within), rtol=1e-8)
        pooled_sd = np.sqrt(within / (len(everything) - 6))
        for e, s in enumerate(per_emotion):
            np.testing.assert_allclose(directions[layer, e].numpy(), s.mean(0) - overall, rtol=1e-10, atol=1e-9)
            np.testing.assert_allclose(standardized[layer, e].numpy(), s.mean(0) / pooled_sd, rtol=1e-8)


def test_the_summary_by_layer_is_each_layers_own_geometry():
    from emoneurons.neurons.directions import ClassSums, directions_summary

    states, counts = token_states(seed=2)
    hidden, squares, tokens = sums_of(states, counts)
    sums = ClassSums(hidden=hidden, squares=squares, values=torch.zeros(LAYERS, 6, NEURONS, dtype=torch.float64),
                     tokens=tokens, dialogues=torch.ones(6, dtype=torch.int64))
    write = [torch.randn(NEURONS, HIDDEN, dtype=torch.float64) for _ in range(LAYERS)]
    summary = directions_summary(sums, write, torch.rand(LAYERS, NEURONS), {}, ratio=0.01, draws=2, seed=0,
                                 control_draw=uniform_same_layer, control="uniform")
    ratio = separation(hidden, squares, tokens)
    assert summary["strongest_layer"] == int(np.argmax(ratio.numpy()))
    standardized = standardized_means(hidden, squares, tokens)
    for layer, per_emotion in enumerate(states):
        overall = np.concatenate(per_emotion).mean(0)
        norms = [np.linalg.norm(s.mean(0) - overall) for s in per_emotion]
        assert [summary["by_layer"]["direction_norm"][e][layer] for e in EMOTIONS] == pytest.approx(norms)
        geometry = means_geometry(standardized[layer], layer)
        assert summary["by_layer"]["pc1_explained"][layer] == geometry.explained[0]
        assert summary["by_layer"]["pc1_is_valence"][layer] == geometry.valence_axis
    assert summary["geometry"] == means_geometry(standardized[summary["strongest_layer"]], summary["strongest_layer"]).record()


def test_pca_equals_numpy_eigendecomposition_of_the_means_covariance():
    means = torch.tensor(np.random.default_rng(3).normal(size=(6, HIDDEN)))
    geometry = means_geometry(means, layer=2)
    centred = means.numpy() - means.numpy().mean(0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(eigenvalues)[::-1]
    share = eigenvalues[order] / eigenvalues.sum()
    np.testing.assert_allclose(geometry.explained, share[:2], rtol=1e-9)
    for axis in range(2):
        expected = centred @ eigenvectors[:, order[axis]]
        got = np.array([geometry.coordinates[e][axis] for e in EMOTIONS])
        assert np.allclose(got, expected, atol=1e-9) or np.allclose(got, -expected, atol=1e-9)
    assert geometry.coordinates["happiness"][0] >= 0  # PC1 signed to happiness
    pc1 = np.array([geometry.coordinates[e][0] for e in EMOTIONS])
    codes = np.array([{"happiness": 1, "surprise": 0}.get(e, -1) for e in EMOTIONS])
    assert geometry.valence_r == pytest.approx(np.corrcoef(pc1, codes)[0, 1])


def _means_on_axes(pc1: dict[str, float], noise: float = 0.0) -> torch.Tensor:
    """Six means whose first axis carries the given coordinates (spread far above the rest)."""
    rng = np.random.default_rng(1)
    means = rng.normal(scale=noise, size=(6, HIDDEN))
    for e, x in pc1.items():
        means[EMOTIONS.index(e), 0] += 10 * x
    return torch.tensor(means)


def test_valence_rule():
    valence = _means_on_axes({"happiness": 1.0, "surprise": 0.2, "anger": -0.5, "disgust": -0.6, "fear": -0.4, "sadness": -0.7}, 0.1)
    geometry = means_geometry(-valence, layer=0)  # the sign of the data does not matter
    assert geometry.valence_axis and geometry.surprise_between and geometry.valence_r > 0.9
    pc1 = {e: c[0] for e, c in geometry.coordinates.items()}
    negatives = [pc1[e] for e in NEGATIVE]
    assert geometry.valence_margin == pytest.approx((pc1["happiness"] - max(negatives)) / (max(negatives) - min(negatives)))
    assert geometry.valence_margin > 1
    # happiness beyond the negatives, but barely (sadness next to it, the negatives spread wide): no
    barely = _means_on_axes({"happiness": 1.0, "surprise": 0.0, "anger": -1.5, "disgust": -0.6, "fear": -0.4, "sadness": 0.9}, 0.01)
    near = means_geometry(barely, layer=0)
    assert 0 < near.valence_margin < 1 and not near.valence_axis
    # anger beyond happiness: PC1 is no valence axis
    mixed = _means_on_axes({"happiness": 1.0, "surprise": 0.0, "anger": 1.3, "disgust": -0.6, "fear": -0.4, "sadness": -0.7}, 0.1)
    assert not means_geometry(mixed, layer=0).valence_axis
    # happiness beyond the negatives only on the second axis
    second = _means_on_axes({"happiness": 0.0, "surprise": 0.0, "anger": 1.0, "disgust": 1.0, "fear": -1.0, "sadness": -1.0})
    second[EMOTIONS.index("happiness"), 1] = 3.0
    result = means_geometry(second, layer=0)
    assert not result.valence_axis and result.pc2_valence_axis
    assert set(NEGATIVE) | {"happiness", "surprise"} == set(EMOTIONS)


def test_cosines_equal_one_neuron_at_a_time():
    rng = np.random.default_rng(4)
    write = [torch.tensor(rng.normal(size=(NEURONS, HIDDEN))) for _ in range(LAYERS)]
    write[1][3] = 0.0  # a dead column: cosine 0, not NaN
    directions = torch.tensor(rng.normal(size=(LAYERS, 6, HIDDEN)))
    cos = write_cosines(write, directions)
    for layer in range(LAYERS):
        for e in range(6):
            for i in range(NEURONS):
                w, d = write[layer][i].numpy(), directions[layer, e].numpy()
                expected = 0.0 if not w.any() else w @ d / np.linalg.norm(w) / np.linalg.norm(d)
                assert cos[layer, e, i].item() == pytest.approx(expected, abs=1e-12)


def test_uniform_draw_keeps_layers_and_counts_and_leaves_the_set_out():
    p_active = torch.rand(LAYERS, NEURONS)
    chosen = {0: torch.tensor([1, 4, 7]), 2: torch.tensor([0, 19])}
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        drawn = uniform_same_layer(p_active, chosen, exclude=chosen, generator=generator)
        assert {k: v.numel() for k, v in drawn.items()} == {0: 3, 2: 2}
        for layer, idx in drawn.items():
            assert len(set(idx.tolist())) == idx.numel() and not set(idx.tolist()) & set(chosen[layer].tolist())


def test_matched_draw_is_the_matched_controls_draw_per_layer():
    p_active = torch.rand(LAYERS, NEURONS, generator=torch.Generator().manual_seed(3)).double()
    chosen = {0: torch.tensor([1, 4, 7]), 2: torch.tensor([0, 19])}
    draw = activity_matched(bins=4)
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(20):
        drawn = draw(p_active, chosen, exclude=chosen, generator=a)
        expected = activity_matched_neurons(p_active, [(0, 1), (0, 4), (0, 7), (2, 0), (2, 19)],
                                            exclude=[(0, 1), (0, 4), (0, 7), (2, 0), (2, 19)], bins=4, generator=b)
        assert [(layer, int(i)) for layer, idx in drawn.items() for i in idx] == expected
        for layer, idx in drawn.items():  # the same bins as the set, none of its own
            bins = quantile_bins(p_active[layer], 4)
            assert sorted(bins[idx].tolist()) == sorted(bins[chosen[layer]].tolist())
            assert not set(idx.tolist()) & set(chosen[layer].tolist())


def test_control_kinds_are_mask_evals():
    p_active = torch.rand(LAYERS, NEURONS, generator=torch.Generator().manual_seed(3)).double()
    chosen = {1: torch.tensor([2, 5])}
    matched = control_draw_of("matched", 4)(p_active, chosen, exclude=chosen, generator=torch.Generator().manual_seed(1))
    again = activity_matched(4)(p_active, chosen, exclude=chosen, generator=torch.Generator().manual_seed(1))
    assert {k: v.tolist() for k, v in matched.items()} == {k: v.tolist() for k, v in again.items()}
    assert control_draw_of("uniform", 4) is uniform_same_layer
    with pytest.raises(ValueError, match="control kind 'busy': allowed: matched, uniform"):
        control_draw_of("busy", 4)


def test_alignment_against_a_brute_force_null():
    rng = np.random.default_rng(5)
    cos = torch.tensor(rng.uniform(-0.3, 0.3, size=(LAYERS, 6, NEURONS)))
    values = torch.tensor(rng.normal(size=(LAYERS, 6, NEURONS)))
    anger = EMOTIONS.index("anger")
    chosen = {0: torch.tensor([2, 3]), 1: torch.tensor([5])}
    for layer, idx in chosen.items():  # anger's neurons write along anger's direction on anger's tokens
        cos[layer, anger, idx] = 0.3
        values[layer, anger, idx] = 1.0
    p_active = torch.rand(LAYERS, NEURONS)
    result = emotion_alignment(cos, values, p_active, {"anger": chosen, "fear": {}}, draws=199, seed=7,
                               control_draw=uniform_same_layer)
    assert set(result) == {"anger"}  # fear has no neurons: no entry
    got = result["anger"]
    # the same draws, one at a time, summarised by hand
    generator = torch.Generator().manual_seed(draw_seed(7, "directions-anger"))
    null_abs, null_signed = [], []
    for _ in range(199):
        drawn = uniform_same_layer(p_active, chosen, exclude=chosen, generator=generator)
        pairs = [(layer, int(i)) for layer, idx in drawn.items() for i in idx]
        null_abs.append(np.mean([abs(cos[l, anger, i].item()) for l, i in pairs]))
        null_signed.append(np.mean([np.sign(values[l, anger, i].item()) * cos[l, anger, i].item() for l, i in pairs]))
    assert got.observed == {"abs_cos": pytest.approx(0.3), "signed_cos": pytest.approx(0.3)}
    assert got.control_mean["signed_cos"] == pytest.approx(np.mean(null_signed))
    assert got.control_sd["abs_cos"] == pytest.approx(np.std(null_abs, ddof=1))
    assert got.p["abs_cos"] == pytest.approx((1 + sum(x >= 0.3 for x in null_abs)) / 200)
    assert got.p["signed_cos"] == pytest.approx((1 + sum(x >= 0.3 for x in null_signed)) / 200)
    assert got.p["signed_cos"] < 0.05 / 6 and got.aligned["signed_cos"]
    assert list(got.control_interval["abs_cos"]) == pytest.approx(np.quantile(null_abs, [0.025, 0.975]))
    own = [(layer, int(i)) for layer, idx in chosen.items() for i in idx]
    others = [np.mean([abs(cos[l, o, i].item()) for l, i in own]) for o in range(6) if o != anger]
    assert got.other_emotions["abs_cos"] == pytest.approx(np.mean(others))
    others = [np.mean([np.sign(values[l, o, i].item()) * cos[l, o, i].item() for l, i in own]) for o in range(6) if o != anger]
    assert got.other_emotions["signed_cos"] == pytest.approx(np.mean(others))
    # seeded: the same again, another seed another null
    again = emotion_alignment(cos, values, p_active, {"anger": chosen}, draws=199, seed=7, control_draw=uniform_same_layer)
    other = emotion_alignment(cos, values, p_active, {"anger": chosen}, draws=199, seed=8, control_draw=uniform_same_layer)
    assert again["anger"] == got and other["anger"].control_mean != got.control_mean
