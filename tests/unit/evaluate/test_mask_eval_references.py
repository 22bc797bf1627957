"""mask-eval's results against references computed here independently of its engine and
aggregation: a plain full forward per (dialogue, label) under `mask_neurons`, neurons.json's lists
filtered by hand-written layer ranges, and control drops averaged by hand."""

from __future__ import annotations

import pytest
import torch
from scipy import stats as scipy_stats

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.calibration import calibration_dialogues
from emoneurons.evaluate.conditions import plan_conditions
from emoneurons.evaluate.masking_eval import evaluate_masking
from emoneurons.evaluate.shots import draw_shots
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.neurons import reference
from emoneurons.neurons.masking import mask_neurons
from emoneurons.params import EvalParams
from emoneurons.text.chat_prompt import dialogue_ids, label_ids
from emoneurons.text.classification_prompt import classification_prompt
from helpers.repo_params import section
from helpers.synthetic_inputs import synthetic_neurons, synthetic_p_active, synthetic_split

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
    params = section("eval", ratios=(0.01, 0.02), layer_ranges=("bottom", "middle", "top", "all"), control_draws=0, null_draws=0)
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


def plain_scores(lm, params: EvalParams, train, dialogues, neurons: dict[int, torch.Tensor], scale: float = 0.0) -> torch.Tensor:
    """[n, 6] raw label log-likelihoods: one full forward per (dialogue, label) under `mask_neurons`
    (`scale` > 0: the method page's own hook multiplying the activations by it), summed over tokens."""
    shots = draw_shots(train, params.shots, params.seed, params.shot_selection)
    prompt = classification_prompt(lm.tokenizer, shots, params.shot_instruction, prompt_format="chat")
    labels = label_ids(lm.tokenizer, params.label_format)
    rows = []
    edit = mask_neurons(lm.model, neurons) if not scale else reference.masked(lm.model, {k: v.tolist() for k, v in neurons.items()}, scale)
    with edit:
        for dialogue in dialogues:
            context = prompt.ids(dialogue_ids(lm.tokenizer, dialogue))
            row = []
            for label in labels:
                logprobs = torch.log_softmax(lm.model(torch.tensor([context + label])).logits[0].float(), -1)
                row.append(sum(float(logprobs[len(context) - 1 + t, tok]) for t, tok in enumerate(label)))
            rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


def reference_prior(lm, train, params: EvalParams) -> torch.Tensor:
    """The unmodified model's mean label probabilities over the calibration dialogues."""
    shots = draw_shots(train, params.shots, params.seed, params.shot_selection)
    return torch.softmax(plain_scores(lm, params, train, calibration_dialogues(train, params, shots), {}), 1).mean(0)


def reference_scores(lm, train, test, params: EvalParams, neurons: dict[int, torch.Tensor], scale: float = 0.0,
                     prior: torch.Tensor | None = None) -> torch.Tensor:
    """Each test dialogue classified from scratch (`plain_scores`), divided by the unmodified model's
    prior over the calibration dialogues (eval.recalibrate false; `prior`: computed once by the
    caller): [n, 6] calibrated label scores."""
    if prior is None:
        prior = reference_prior(lm, train, params)
    return torch.log_softmax(plain_scores(lm, params, train, test["dialogue"].to_list(), neurons, scale), 1) - torch.log(prior)


@pytest.fixture(scope="module")
def evaluated(tiny_llama):
    n_layers = len(tiny_llama.model.model.layers)
    per_layer = tiny_llama.model.config.intermediate_size
    # Large sets (a fifth of the tiny model's neurons), so that every mask moves the scores clearly.
    neurons = synthetic_neurons(ratios=(0.2, 0.4), layers=n_layers, per_layer=per_layer)
    params = section("eval", ratios=(0.2, 0.4), layer_ranges=("bottom", "middle", "top", "all"), control_draws=2, bootstrap=100,
                     controls=("uniform",), null_draws=0, scales=())
    train, test = synthetic_split(3), synthetic_split(2, offset=10)
    evaluation, headline, _ = evaluate_masking(tiny_llama, train, test, parse_neurons(neurons), params, 0.2, batch_size=4, progress=False, workers=1, max_length=None, prompt_format="chat")
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


@pytest.fixture(scope="module")
def nulls(tiny_llama):
    """The RQ2 masks with both control kinds, a draw-level null of 3 draws and one graded factor."""
    n_layers = len(tiny_llama.model.model.layers)
    per_layer = tiny_llama.model.config.intermediate_size
    neurons = synthetic_neurons(ratios=(0.2,), layers=n_layers, per_layer=per_layer)
    params = section("eval", ratios=(0.2,), layer_ranges=("all",), control_draws=1, bootstrap=50,
                     controls=("matched", "uniform"), null_draws=3, scales=(0.5,), activity_bins=4)
    train, test = synthetic_split(3), synthetic_split(2, offset=10)
    p_active = synthetic_p_active(n_layers, per_layer)
    evaluation, _, _ = evaluate_masking(tiny_llama, train, test, parse_neurons(neurons), params, 0.2, batch_size=4, progress=False, workers=1,
                                     p_active=p_active, max_length=None, prompt_format="chat")
    plan = {c.id: c for c in plan_conditions(parse_neurons(neurons), params, 0.2, n_layers, p_active)}
    prior = reference_prior(tiny_llama, train, params)

    def scores(neurons: dict, scale: float = 0.0) -> torch.Tensor:
        """[n, 6] log p over the labels under `neurons` (scaled), from scratch."""
        return torch.log_softmax(reference_scores(tiny_llama, train, test, params, neurons, scale, prior), 1)

    return evaluation, plan, params, p_active, scores, scores({})


def masked_label_effect(scores, base, neurons, emotion, scale=0.0) -> float:
    """Mean Δ log p(emotion's label) over the test dialogues, from scratch."""
    m = EMOTIONS.index(emotion)
    return float((scores(neurons, scale)[:, m] - base[:, m]).mean())


@pytest.mark.parametrize("cid", ["matched-anger-r0.2-all-d0", "mask-fear-r0.2-all-s0.5", "matched-sadness-r0.2-all-s0.5-d0"])
def test_matched_and_graded_conditions_equal_a_plain_classification(tiny_llama, nulls, cid):
    evaluation, plan, params, _, scores, base = nulls
    condition = next(c for c in evaluation["conditions"] if c["id"] == cid)
    own = scores(plan[cid].neurons, plan[cid].scale)
    assert condition["predicted"] == [EMOTIONS[int(i)] for i in own.argmax(1)]
    m = EMOTIONS.index(condition["masked"])
    delta = own[:, m] - base[:, m]
    assert condition["effect"]["delta_masked"]["per_dialogue"] == pytest.approx(delta.tolist(), abs=1e-5)
    assert max(delta.abs()) > 1e-4


def test_draw_level_null_ranks_the_mask_among_draws_computed_from_scratch(tiny_llama, nulls):
    """Every draw of anger's null rerun from scratch (the same seeded sets), its rank, p and the Holm
    step by hand; and the same statistics for every mask from eval.json's own numbers."""
    from emoneurons.evaluate.conditions import control_neurons

    evaluation, plan, params, p_active, scores, base = nulls
    record = evaluation["draw_null"]
    assert (record["kind"], record["draws"], record["masks"], record["correction"]) == ("matched", 3, "rq2", "holm")
    assert record["runs"] == 6 * 2  # draws 1 and 2; draw 0 is the conditions' own
    mask = plan["mask-anger-r0.2-all"]
    effect = masked_label_effect(scores, base, mask.neurons, "anger")
    per_layer = tiny_llama.model.config.intermediate_size
    entry = record["conditions"]["mask-anger-r0.2-all"]
    draws = [masked_label_effect(scores, base, control_neurons("matched", mask, d, params, per_layer, p_active), "anger")
             for d in range(3)]
    assert entry["effect"] == pytest.approx(effect, abs=1e-5)
    assert entry["draws"] == pytest.approx(draws, abs=1e-5)
    fear = plan["mask-fear-r0.2-all"]  # another label than the first: the masked one, not anger's
    fear_draw = control_neurons("matched", fear, 2, params, per_layer, p_active)
    assert record["conditions"][fear.id]["effect"] == pytest.approx(masked_label_effect(scores, base, fear.neurons, "fear"), abs=1e-5)
    assert record["conditions"][fear.id]["draws"][2] == pytest.approx(masked_label_effect(scores, base, fear_draw, "fear"), abs=1e-5)
    rank = 1 + sum(d <= effect for d in draws)
    assert (entry["rank"], entry["p"]) == (rank, pytest.approx(rank / 4, abs=1e-6))
    # The normal prediction p by hand: t with K - 1 degrees of freedom, sd * sqrt(1 + 1/K).
    mean = sum(draws) / 3
    sd = (sum((d - mean) ** 2 for d in draws) / 2) ** 0.5
    assert entry["p_normal"] == pytest.approx(float(scipy_stats.t.cdf((effect - mean) / (sd * (1 + 1 / 3) ** 0.5), 2)), rel=1e-3)
    # Draw 0 is the condition's own control: the same number as its effect record.
    by_id = {c["id"]: c for c in evaluation["conditions"]}
    assert entry["draws"][0] == pytest.approx(by_id["matched-anger-r0.2-all-d0"]["effect"]["delta_masked"]["mean"], abs=2e-6)
    tested = {cid: e for cid, e in record["conditions"].items() if e["p"] is not None}
    m = len(tested)
    assert record["corrected_over"] == m == 6 and record["draws_needed"] == 119  # 1/(K+1) <= 0.05/6
    for key in ("p", "p_normal"):
        running = 0.0
        for i, (_cid, e) in enumerate(sorted(tested.items(), key=lambda item: item[1][key])):
            running = max(running, min(1.0, (m - i) * e[key]))
            assert e[f"{key}_holm"] == pytest.approx(running, rel=1e-3, abs=1e-5)
    for e in tested.values():
        assert e["p"] == pytest.approx((1 + sum(d <= e["effect"] for d in e["draws"])) / 4, abs=1e-6)
        assert e["verdict"] == "not enough draws"  # 3 draws cannot reach 0.05 / 6
        assert e["verdict_normal"] == ("specific" if e["p_normal_holm"] <= 0.05 else "not distinguishable from random")


def test_dose_response_is_the_graded_masks_effects_by_hand(tiny_llama, nulls):
    evaluation, plan, params, _, scores, base = nulls
    record = evaluation["dose_response"]
    assert record["scales"] == [0.0, 0.5] and record["effect"] == "delta_masked"
    by_id = {c["id"]: c for c in evaluation["conditions"]}
    for emotion in ("anger", "happiness"):
        entry = record["emotions"][emotion]
        mask = plan[f"mask-{emotion}-r0.2-all"]
        by_hand = [masked_label_effect(scores, base, mask.neurons, emotion, scale) for scale in (0.0, 0.5)]
        assert entry["mask"] == pytest.approx(by_hand, abs=1e-5)
        assert entry["control"] == pytest.approx(
            [by_id[f"matched-{emotion}-r0.2-all-d0"]["effect"]["delta_masked"]["mean"],
             by_id[f"matched-{emotion}-r0.2-all-s0.5-d0"]["effect"]["delta_masked"]["mean"]], abs=1e-6)
        control = plan[f"matched-{emotion}-r0.2-all-s0.5-d0"]
        assert entry["control"][1] == pytest.approx(masked_label_effect(scores, base, control.neurons, emotion, 0.5), abs=1e-5)
        # Monotone by hand: factor 0, 0.5, then 1 (the unmodified model, effect 0).
        points = [*by_hand, 0.0]
        direction = (points[-1] > points[0]) - (points[-1] < points[0])
        against = sum(((b > a) - (b < a)) == -direction for a, b in zip(points, points[1:]))
        assert (entry["monotone"], entry["reversals"]) == (against == 0, against)


def test_vs_matched_pairs_each_dialogue_with_the_matched_controls_by_hand(nulls):
    evaluation, plan, params, *_ = nulls
    by_id = {c["id"]: c for c in evaluation["conditions"]}
    masks = [c for c in evaluation["conditions"] if c["kind"] == "mask" and not c["scale"]]
    for key, prefix in (("vs_matched", "matched"), ("vs_control", "control")):
        for condition in masks:
            own = torch.tensor(condition["effect"]["delta_masked"]["per_dialogue"], dtype=torch.float64)
            control = torch.tensor(by_id[f"{prefix}{condition['id'].removeprefix('mask')}-d0"]["effect"]["delta_masked"]["per_dialogue"],
                                   dtype=torch.float64)
            assert condition[key]["difference"] == pytest.approx(float((own - control).mean()), abs=2e-6)
            assert condition[key]["control_mean"] == pytest.approx(float(control.mean()), abs=2e-6)
        tested = sorted((c[key] for c in masks if c[key]["p"] is not None), key=lambda v: v["p"])
        running = 0.0
        for rank, record in enumerate(tested):  # Holm within this kind's family
            running = max(running, min(1.0, (len(tested) - rank) * record["p"]))
            assert record["p_holm"] == pytest.approx(running, abs=1e-5)
    assert [c["vs_matched"]["difference"] for c in masks] != [c["vs_control"]["difference"] for c in masks]
    assert not any("vs_matched" in c or "vs_control" in c for c in evaluation["conditions"] if c["scale"])  # graded: no test


def test_each_kinds_p_is_the_exact_sign_flip_enumeration(nulls):
    """vs_matched's and vs_control's p: every one of the 2^n sign patterns of the per-dialogue
    differences (mask minus its control of that kind) enumerated here, p = the share whose mean is
    at or below the observed one (one-sided, mean < 0)."""
    import itertools

    evaluation, *_ = nulls
    by_id = {c["id"]: c for c in evaluation["conditions"]}
    masks = [c for c in evaluation["conditions"] if c["kind"] == "mask" and not c["scale"]]
    n = len(masks[0]["effect"]["delta_masked"]["per_dialogue"])
    flips = torch.tensor(list(itertools.product([1.0, -1.0], repeat=n)), dtype=torch.float64)
    checked = 0
    for key, prefix in (("vs_matched", "matched"), ("vs_control", "control")):
        for condition in masks:
            own = torch.tensor(condition["effect"]["delta_masked"]["per_dialogue"], dtype=torch.float64)
            control = torch.tensor(by_id[f"{prefix}{condition['id'].removeprefix('mask')}-d0"]["effect"]["delta_masked"]["per_dialogue"],
                                   dtype=torch.float64)
            d = own - control
            expected = float(((flips * d).mean(1) <= d.mean() + 1e-9).double().mean())
            assert condition[key]["p"] == pytest.approx(expected, abs=1e-6), (key, condition["id"])  # eval.json keeps 6 decimals
            checked += expected < 1
    assert checked >= 6  # not only all-zero differences


def test_the_draw_level_null_covers_the_rq2_masks_or_every_plain_mask():
    """eval.null_masks: `rq2` the six masks at select.top_rate on all layers, `all` every plain
    masked condition (no control, no graded mask), against the ids written out here."""
    from emoneurons.evaluate.draw_null import covered_masks

    neurons = parse_neurons(synthetic_neurons(ratios=(0.2, 0.4), layers=4, per_layer=32))
    for masks, wanted in (("rq2", [f"mask-{e}-r0.2-all" for e in EMOTIONS]),
                          ("all", [f"mask-{e}-r{r}-{layers}" for r, layers in (("0.2", "all"), ("0.4", "all"), ("0.2", "bottom"))
                                   for e in EMOTIONS])):
        params = section("eval", ratios=(0.2, 0.4), layer_ranges=("bottom", "all"), control_draws=1, controls=("uniform",),
                         null_draws=5, null_masks=masks, scales=(0.5,))
        plan = plan_conditions(neurons, params, 0.2, 4)
        assert sorted(c.id for c in covered_masks(plan, params, 0.2)) == sorted(wanted)


def test_the_draw_level_nulls_mean_effect_for_generate_is_the_masked_answers_change_by_hand():
    """eval.method generate (no scores): a draw's effect is the mean over dialogues of +1 (starts
    answering the masked emotion), -1 (stops), 0 (neither), an unparseable answer being neither."""
    from emoneurons.evaluate.draw_null import MeanEffect

    base = ["anger", "fear", None, "anger", "sadness"]
    effect = MeanEffect(base, None)
    drawn = ["fear", "anger", "anger", "anger", None]
    for masked, expected in (("anger", 1 / 5), ("fear", 0.0), ("sadness", -1 / 5)):
        by_hand = sum((d == masked) - (b == masked) for b, d in zip(base, drawn, strict=True)) / len(base)
        assert by_hand == pytest.approx(expected)
        assert effect(drawn, None, masked) == pytest.approx(by_hand)
