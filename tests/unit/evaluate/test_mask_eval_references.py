"""mask-eval's results against references computed here independently of its engine and
aggregation: a plain full forward per (dialogue, label) under `mask_neurons`, neurons.json's lists
filtered by hand-written layer ranges, and control drops averaged by hand."""

from __future__ import annotations

import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.calibration import calibration_dialogues
from emoneurons.evaluate.conditions import plan_conditions
from emoneurons.evaluate.masking_eval import evaluate_masking
from emoneurons.evaluate.shots import draw_shots
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.neurons.masking import mask_neurons
from emoneurons.params import EvalParams
from emoneurons.text.chat_prompt import dialogue_ids, label_ids
from emoneurons.text.classification_prompt import classification_prompt
from helpers.repo_params import section
from helpers.synthetic_inputs import synthetic_neurons, synthetic_split

# Hand-written thirds (first third, second third, the rest), not computed by the code under test.
RANGES = {
    4: {"bottom": {0}, "middle": {1}, "top": {2, 3}},
    6: {"bottom": {0, 1}, "middle": {2, 3}, "top": {4, 5}},
    7: {"bottom": {0, 1}, "middle": {2, 3}, "top": {4, 5, 6}},
    30: {"bottom": set(range(10)), "middle": set(range(10, 20)), "top": set(range(20, 30))},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def boundary_neurons(layers: int, ratios=(0.01, 0.02), per_layer: int = 16) -> dict:
    """A neurons.json whose every emotion has neurons in every layer, the range boundaries included."""
    out = {"top_rate": ratios[0], "layers": layers, "neurons_per_layer": per_layer, "ratios": {}}
    for r, ratio in enumerate(ratios):
        out["ratios"][f"{ratio:g}"] = {"neurons": {
            e: [[layer, (3 * layer + 5 * k + r) % per_layer] for layer in range(layers)] + [[layer, (7 * k + r + 1) % per_layer] for layer in range(0, layers, 2)]
            for k, e in enumerate(EMOTIONS)}}
        for pairs in out["ratios"][f"{ratio:g}"]["neurons"].values():
            pairs[:] = sorted({tuple(p) for p in pairs})
        out["ratios"][f"{ratio:g}"]["selected"] = len({tuple(p) for v in out["ratios"][f"{ratio:g}"]["neurons"].values() for p in v})
    return out


@pytest.mark.parametrize("layers", sorted(RANGES))
def test_plan_neuron_sets_equal_neurons_json_lists(layers):
    neurons = boundary_neurons(layers)
    params = section("eval", ratios=(0.01, 0.02), layer_ranges=("bottom", "middle", "top", "all"), control_draws=0)
    plan = {c.id: c for c in plan_conditions(parse_neurons(neurons), params, 0.01, layers)}
    ranges = RANGES[layers] | {"all": set(range(layers))}
    wanted = [(0.01, name) for name in ranges] + [(0.02, "all")]
    for ratio, name in wanted:
        for emotion in EMOTIONS:
            listed = {tuple(p) for p in neurons["ratios"][f"{ratio:g}"]["neurons"][emotion] if p[0] in ranges[name]}
            condition = plan[f"mask-{emotion}-r{ratio:g}-{name}"]
            planned = {(layer, int(i)) for layer, idx in condition.neurons.items() for i in idx}
            assert planned == listed, (emotion, ratio, name)
            assert condition.n_neurons == len(listed)
    # Every listed layer has neurons, so every boundary layer was checked on both sides.
    assert {p[0] for p in neurons["ratios"]["0.01"]["neurons"]["anger"]} == set(range(layers))


def reference_scores(lm, train, test, params: EvalParams, neurons: dict[int, torch.Tensor]) -> torch.Tensor:
    """Each test dialogue classified from scratch: one full forward per (dialogue, label) under
    `mask_neurons`, labels summed over their tokens, divided by the unmodified model's prior over
    the calibration dialogues (eval.recalibrate false): [n, 6] calibrated label scores."""
    shots = draw_shots(train, params.shots, params.seed, params.shot_selection)
    prompt = classification_prompt(lm.tokenizer, shots, params.shot_instruction)
    labels = label_ids(lm.tokenizer, params.label_format)

    def scores(dialogues, mask):
        rows = []
        with mask_neurons(lm.model, mask):
            for dialogue in dialogues:
                context = prompt.ids(dialogue_ids(lm.tokenizer, dialogue))
                row = []
                for label in labels:
                    logprobs = torch.log_softmax(lm.model(torch.tensor([context + label])).logits[0].float(), -1)
                    row.append(sum(float(logprobs[len(context) - 1 + t, tok]) for t, tok in enumerate(label)))
                rows.append(row)
        return torch.tensor(rows, dtype=torch.float64)

    prior = torch.softmax(scores(calibration_dialogues(train, params, shots), {}), 1).mean(0)
    return torch.log_softmax(scores(test["dialogue"].to_list(), neurons), 1) - torch.log(prior)


@pytest.fixture(scope="module")
def evaluated(tiny_llama):
    n_layers = len(tiny_llama.model.model.layers)
    per_layer = tiny_llama.model.config.intermediate_size
    # Large sets (a fifth of the tiny model's neurons), so that every mask moves the scores clearly.
    neurons = synthetic_neurons(ratios=(0.2, 0.4), layers=n_layers, per_layer=per_layer)
    params = section("eval", ratios=(0.2, 0.4), layer_ranges=("bottom", "middle", "top", "all"), control_draws=2, bootstrap=100)
    train, test = synthetic_split(3), synthetic_split(2, offset=10)
    evaluation, headline = evaluate_masking(tiny_llama, train, test, parse_neurons(neurons), params, 0.2, batch_size=4, progress=False, workers=1)
    plan = {c.id: c for c in plan_conditions(parse_neurons(neurons), params, 0.2, n_layers)}
    return evaluation, headline, plan, params, train, test


@pytest.mark.parametrize("cid", ["unmodified", "mask-anger-r0.2-all", "mask-fear-r0.4-all", "mask-happiness-r0.2-middle",
                                 "mask-sadness-r0.2-top", "control-disgust-r0.2-bottom-d1"])
def test_condition_predictions_equal_a_plain_masked_classification(tiny_llama, evaluated, cid):
    evaluation, _, plan, params, train, test = evaluated
    condition = next(c for c in evaluation["conditions"] if c["id"] == cid)
    own = reference_scores(tiny_llama, train, test, params, plan[cid].neurons)
    expected = [EMOTIONS[int(i)] for i in own.argmax(1)]
    assert condition["predicted"] == expected
    # The confusion matrix is the one these predictions give.
    confusion = [[0] * 6 for _ in EMOTIONS]
    for true, predicted in zip(test["label"].to_list(), expected):
        confusion[EMOTIONS.index(true)][EMOTIONS.index(predicted)] += 1
    assert condition["confusion"] == confusion
    if cid == "unmodified":
        return
    # Paired effects: log p over the six labels, condition minus unmodified, per dialogue.
    base = torch.log_softmax(reference_scores(tiny_llama, train, test, params, {}), 1)
    masked = torch.log_softmax(own, 1)
    true = torch.tensor([EMOTIONS.index(t) for t in test["label"].to_list()])
    rows = torch.arange(len(true))
    delta_true = masked[rows, true] - base[rows, true]
    m = EMOTIONS.index(condition["masked"])
    delta_masked = masked[:, m] - base[:, m]
    effect = condition["effect"]
    assert effect["delta_true"]["per_dialogue"] == pytest.approx(delta_true.tolist(), abs=1e-5)
    assert effect["delta_masked"]["per_dialogue"] == pytest.approx(delta_masked.tolist(), abs=1e-5)
    assert effect["delta_masked"]["mean"] == pytest.approx(float(delta_masked.mean()), abs=1e-5)
    for i, emotion in enumerate(EMOTIONS):
        assert effect["delta_true"]["per_emotion"][emotion]["mean"] == pytest.approx(float(delta_true[true == i].mean()), abs=1e-5)
    assert max(delta_masked.abs()) > 1e-4  # 10x the tolerance: the comparison can fail


def test_control_drop_is_the_mean_over_draws_by_hand(evaluated):
    evaluation, headline, _, params, _, test = evaluated
    by_id = {c["id"]: c for c in evaluation["conditions"]}
    labels = test["label"].to_list()

    def accuracy(cid: str, emotion: str) -> float:
        predicted = by_id[cid]["predicted"]
        rows = [p for t, p in zip(labels, predicted) if t == emotion]
        return sum(p == emotion for p in rows) / len(rows)

    for emotion in EMOTIONS:
        drops = [accuracy("unmodified", emotion) - accuracy(f"control-{emotion}-r0.2-all-d{d}", emotion) for d in range(params.control_draws)]
        assert headline[f"control_drop_{emotion}"] == pytest.approx(sum(drops) / len(drops), abs=1e-4)
        assert headline[f"drop_{emotion}"] == pytest.approx(accuracy("unmodified", emotion) - accuracy(f"mask-{emotion}-r0.2-all", emotion), abs=1e-4)


def test_vs_control_difference_and_corrections_by_hand(evaluated):
    evaluation, _, _, params, _, _ = evaluated
    by_id = {c["id"]: c for c in evaluation["conditions"]}
    masks = [c for c in evaluation["conditions"] if c["kind"] == "mask"]
    tested = [c for c in masks if c["vs_control"]["p"] is not None]
    for condition in masks:
        own = torch.tensor(condition["effect"]["delta_masked"]["per_dialogue"], dtype=torch.float64)
        draws = [torch.tensor(by_id[f"control{condition['id'].removeprefix('mask')}-d{d}"]["effect"]["delta_masked"]["per_dialogue"],
                              dtype=torch.float64) for d in range(params.control_draws)]
        if condition["n_neurons"]:
            assert condition["vs_control"]["difference"] == pytest.approx(float((own - sum(draws) / len(draws)).mean()), abs=2e-6)
        else:
            assert condition["vs_control"]["verdict"] == "not enough data"
    # Holm by hand over every tested condition: sorted p x (m - rank), running maximum, capped at 1.
    m = len(tested)
    assert evaluation["effects"]["corrected_over"] == m
    ordered = sorted(tested, key=lambda c: c["vs_control"]["p"])
    running = 0.0
    for rank, condition in enumerate(ordered):
        running = max(running, min(1.0, (m - rank) * condition["vs_control"]["p"]))
        assert condition["vs_control"]["p_holm"] == pytest.approx(running, abs=1e-5)
        assert condition["vs_control"]["p_bh"] <= condition["vs_control"]["p_holm"] + 1e-9
