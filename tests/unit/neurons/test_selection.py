"""LAPE identify on hand-built counts whose answer is worked out by hand, plus a loop reference."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.neurons.selection import (
    activation_probability,
    lape_quantile,
    neuron_entropy,
    select_emotion_neurons,
)
from helpers.repo_params import params_yaml
from helpers.stage_runner import REPO


def hand_counts() -> tuple[torch.Tensor, torch.Tensor]:
    """2 layers x 4 neurons, T_e = 10, so P = f / 10.

    (0,0) anger only          P max 1.0  H 0
    (0,1) uniform 0.5         P max 0.5  H log 6
    (0,2) never active        P max 0    H +inf
    (0,3) fear + happiness    P max 0.9  H log 2
    (1,0) surprise only       P max 1.0  H 0     (ties with (0,0))
    (1,1) anger only, weakly  P max 0.1  H 0
    (1,2) never active
    (1,3) uniform 0.2         P max 0.2  H log 6
    The 48 P values sorted: 31 zeros, 0.1, 6 x 0.2, 6 x 0.5, 2 x 0.9, 2 x 1.0.
    """
    f = torch.zeros(2, 4, 6, dtype=torch.int64)
    f[0, 0, 0] = 10
    f[0, 1, :] = 5
    f[0, 3, 2] = f[0, 3, 3] = 9
    f[1, 0, 5] = 10
    f[1, 1, 0] = 1
    f[1, 3, :] = 2
    return f, torch.full((6,), 10, dtype=torch.int64)


def select(top_rate, filter_rate=0.7, bar=0.7, assign="lape", counts=None):
    f, T = counts or hand_counts()
    return select_emotion_neurons(f, T, top_rate=top_rate, filter_rate=filter_rate, activation_bar_ratio=bar, assign=assign)


def selected_set(selection) -> set[tuple[int, int]]:
    return {tuple(pair) for pairs in selection.neurons.values() for pair in pairs}


def test_quantile_is_lape_kthvalue():
    f, T = hand_counts()
    P = activation_probability(f, T)
    assert lape_quantile(P, 0.7) == pytest.approx(0.2)  # k = round(33.6) = 34 -> 0.2
    assert lape_quantile(P, 0.95) == pytest.approx(0.9)  # k = round(45.6) = 46 -> 0.9
    assert lape_quantile(P, 0.9) == pytest.approx(0.5)  # k = round(43.2) = 43 -> 0.5
    assert lape_quantile(P, 0.5) == 0.0  # k = 24 -> a zero
    assert lape_quantile(torch.tensor([3.0]), 0.01) == 3.0  # k clamped to 1


def test_entropy_by_hand_and_never_active_is_inf_not_nan():
    f, T = hand_counts()
    H = neuron_entropy(activation_probability(f, T))
    expected = [[0.0, math.log(6), math.inf, math.log(2)], [0.0, 0.0, math.inf, math.log(6)]]
    assert not torch.isnan(H).any()
    assert H.flatten().tolist() == pytest.approx([h for row in expected for h in row])


def test_single_emotion_neurons_are_selected_and_uniform_is_not():
    s = select(top_rate=0.25)  # round(0.25 * 8) = 2: the two H = 0 candidates
    assert s.selected == 2
    assert selected_set(s) == {(0, 0), (1, 0)}
    assert s.neurons["anger"] == [[0, 0]] and s.neurons["surprise"] == [[1, 0]]
    assert s.entropy_threshold == 0.0
    # (1,1) also has H = 0, but its P (0.1) is not above the 0.7 quantile (0.2): filtered out.
    assert (1, 1) not in selected_set(select(top_rate=0.5))


def test_ties_break_by_layer_then_index():
    s = select(top_rate=0.1)  # round(0.8) = 1 of the two H = 0 neurons: the one in layer 0
    assert selected_set(s) == {(0, 0)}
    # With the filter at a zero (0.5 quantile), (1,1) becomes a candidate and ties at H = 0 too.
    s = select(top_rate=0.375, filter_rate=0.5, bar=0.5)
    assert selected_set(s) == {(0, 0), (1, 0), (1, 1)}
    assert s.neurons["anger"] == [[0, 0], [1, 1]]


def test_top_rate_sets_the_number_selected_by_round():
    for rate, n in [(0.1, 1), (0.2, 2), (0.25, 2), (0.3, 2), (0.375, 3), (0.5, 4)]:
        assert select(top_rate=rate).selected == n == round(rate * 8)
    # Only 4 candidates exist (never-active and weak neurons are excluded): the quota is not filled with them.
    s = select(top_rate=0.9)
    assert s.selected == 4 and selected_set(s) == {(0, 0), (1, 0), (0, 3), (0, 1)}
    assert s.entropy_threshold == pytest.approx(math.log(6))


def test_never_active_neuron_is_never_selected():
    f, T = hand_counts()
    f[:, :, :] = 0
    f[0, 0, 1] = 3  # one disgust-only neuron; everything else never fires
    s = select(top_rate=0.5, filter_rate=0.5, counts=(f, T))
    assert selected_set(s) == {(0, 0)} and s.neurons["disgust"] == [[0, 0]]


def test_multi_assignment_gives_a_neuron_to_two_emotions():
    s = select(top_rate=0.375, bar=0.9)  # bar = 0.5: (0,3) has 0.9 for fear and happiness
    assert s.neurons["fear"] == [[0, 3]] and s.neurons["happiness"] == [[0, 3]]
    assert s.per_emotion == {"anger": 1, "disgust": 0, "fear": 1, "happiness": 1, "sadness": 0, "surprise": 1}
    assert s.selected == 3 and sum(s.per_emotion.values()) == 4
    assert s.entropy_threshold == pytest.approx(math.log(2))
    # The uniform 0.5 neuron belongs to all six emotions once the bar (0.2) is below 0.5.
    wide = select(top_rate=0.5, bar=0.7)
    assert all([0, 1] in wide.neurons[e] for e in EMOTIONS)
    # A bar at 0.9 (0.95 quantile) is not exceeded by 0.9: (0,3) is selected but in no emotion.
    high = select(top_rate=0.375, bar=0.95)
    assert high.selected == 3 and sum(high.per_emotion.values()) == 2


def test_argmax_gives_exactly_one_emotion():
    s = select(top_rate=0.5, assign="argmax")
    assert sum(s.per_emotion.values()) == s.selected == 4
    assert s.neurons["anger"] == [[0, 0], [0, 1]]  # the uniform neuron: first maximum, anger
    assert s.neurons["fear"] == [[0, 3]] and s.neurons["happiness"] == []


def test_per_layer_counts():
    s = select(top_rate=0.5)
    assert s.per_layer["anger"] == [2, 0] and s.per_layer["surprise"] == [1, 1]
    for emotion in EMOTIONS:
        assert sum(s.per_layer[emotion]) == s.per_emotion[emotion] == len(s.neurons[emotion])


def test_emotion_without_tokens_raises_naming_it():
    f, T = hand_counts()
    T[2] = 0
    f[:, :, 2] = 0
    with pytest.raises(ValueError, match="fear"):
        select(top_rate=0.25, counts=(f, T))


def loop_reference(f, T, top_rate, filter_rate, bar, assign):
    """LAPE identify restated with Python lists and sorted(), for random cross-checks."""
    L, N, E = f.shape
    P = [[[f[l, u, e].item() / T[e].item() for e in range(E)] for u in range(N)] for l in range(L)]
    values = sorted(p for layer in P for neuron in layer for p in neuron)
    quantile = lambda q: values[min(max(round(len(values) * q), 1), len(values)) - 1]  # noqa: E731
    cut, bar_value = quantile(filter_rate), quantile(bar)
    ranked = []
    for l in range(L):
        for u in range(N):
            total = sum(P[l][u])
            if total == 0 or max(P[l][u]) <= cut:
                continue
            h = -sum(p / total * math.log(p / total) for p in P[l][u] if p > 0)
            ranked.append((h, l, u))
    chosen = sorted(ranked)[: round(L * N * top_rate)]
    out = {e: [] for e in EMOTIONS}
    for _, l, u in chosen:
        if assign == "lape":
            targets = [e for e in range(E) if P[l][u][e] > bar_value]
        else:
            targets = [P[l][u].index(max(P[l][u]))]
        for e in targets:
            out[EMOTIONS[e]].append([l, u])
    return {e: sorted(v) for e, v in out.items()}, len(chosen)


@pytest.mark.parametrize("seed", range(6))
def test_random_counts_match_loop_reference(seed):
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    T = torch.randint(5, 9, (6,), generator=g)
    # Small integers: many ties in P and in entropy; some neurons never fire.
    f = torch.minimum(torch.randint(0, 6, (3, 20, 6), generator=g) * (torch.rand(3, 20, 1, generator=g) > 0.2), T)
    for assign in ("lape", "argmax"):
        top, fr, bar = rng.choice([0.05, 0.1, 0.25]), rng.choice([0.5, 0.8, 0.95]), rng.choice([0.5, 0.9, 0.95])
        s = select_emotion_neurons(f, T, top_rate=top, filter_rate=fr, activation_bar_ratio=bar, assign=assign)
        neurons, n = loop_reference(f, T, top, fr, bar, assign)
        assert s.selected == n
        assert s.neurons == neurons


def test_select_stage_writes_contract_files(tmp_path):
    from safetensors.torch import save_file

    f, T = hand_counts()
    counts = tmp_path / "data" / "counts"
    counts.mkdir(parents=True)
    save_file({"f": f, "T": T}, counts / "counts.safetensors")
    (tmp_path / "params.yaml").write_text(params_yaml({"select": {"top_rate": 0.25, "filter_rate": 0.7, "activation_bar_ratio": 0.7}, "eval": {"ratios": [0.25, 0.5]}}))
    run = subprocess.run(
        [sys.executable, str(REPO / "stages" / "select_neurons.py")], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    out = json.loads((tmp_path / "data" / "neurons" / "neurons.json").read_text())
    assert out["top_rate"] == 0.25 and out["assign"] == "lape" and out["layers"] == 2 and out["neurons_per_layer"] == 4
    assert sorted(out["ratios"]) == ["0.25", "0.5"]
    assert out["ratios"]["0.25"]["neurons"]["anger"] == [[0, 0]]
    assert out["ratios"]["0.5"]["selected"] == 4
    metrics = json.loads((tmp_path / "reports" / "metrics" / "neurons.json").read_text())
    assert metrics == {"neurons_anger": 1, "neurons_disgust": 0, "neurons_fear": 0, "neurons_happiness": 0,
                       "neurons_sadness": 0, "neurons_surprise": 1, "selected": 2}
    # The data checks that ran on neurons.json are saved beside it, all passed.
    checks = json.loads((tmp_path / "data" / "neurons" / "checks.json").read_text())
    assert checks["ran"] == checks["passed"] == len(checks["expectations"]) >= 8
    assert {e["file"] for e in checks["expectations"]} == {"data/neurons/neurons.json"}
    assert ("expect_compound_columns_to_be_unique", "ratio/emotion/layer/index") in {
        (e["expectation"], e["column"]) for e in checks["expectations"]}


def test_select_stage_bad_counts_fail_in_one_line(tmp_path):
    from safetensors.torch import save_file

    f, T = hand_counts()
    T[4] = 0
    f[:, :, 4] = 0
    (tmp_path / "data" / "counts").mkdir(parents=True)
    save_file({"f": f, "T": T}, tmp_path / "data" / "counts" / "counts.safetensors")
    (tmp_path / "params.yaml").write_text(params_yaml({"select": {"top_rate": 0.25}}))
    run = subprocess.run(
        [sys.executable, str(REPO / "stages" / "select_neurons.py")], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1
    assert "sadness" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data" / "neurons").exists() and not (tmp_path / "reports").exists()
