"""The condition plan and the mask-eval body (evaluate_masking) on the tiny model."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.calibration import calibration_dialogues
from emoneurons.evaluate.conditions import PlanError, first_masked_layers, plan_conditions, unique_masks
from emoneurons.evaluate.mask_pool import mask_workers
from emoneurons.evaluate.masking_eval import evaluate_masking
from emoneurons.evaluate.shots import EvalDataError, draw_shots
from emoneurons.io.neurons_file import NoSelectionError, parse_neurons
from emoneurons.params import ParamsError
from emoneurons.text.chat_prompt import CONTENT_FREE_DIALOGUE
from helpers.repo_params import params_with, section
from helpers.synthetic_inputs import LAYERS, PER_LAYER, synthetic_neurons, synthetic_p_active, synthetic_split


def test_plan_ids_dedup_and_order():
    params = section("eval", ratios=(0.01, 0.02), layer_ranges=("bottom", "top", "all"), control_draws=2,
                     controls=("matched", "uniform"))
    plan = plan_conditions(parse_neurons(synthetic_neurons()), params, 0.01, LAYERS, synthetic_p_active())
    ids = [c.id for c in plan]
    assert len(ids) == len(set(ids))
    assert ids[0] == "unmodified"
    # RQ2 = ratio 0.01 all = layer range all at top_rate: one id.
    masks = [c for c in plan if c.kind == "mask"]
    assert len(masks) == 6 * (1 + 1 + 2)  # RQ2, r0.02, bottom, top
    assert "mask-anger-r0.01-all" in ids and "mask-fear-r0.02-all" in ids and "mask-disgust-r0.01-top" in ids
    controls = [c for c in plan if c.control]
    assert len(controls) == 2 * 2 * len(masks)  # two kinds, two draws
    assert "control-anger-r0.01-all-d1" in ids and "matched-anger-r0.01-all-d1" in ids
    assert {c.kind for c in controls} == {"control", "matched"}
    assert ids.index("matched-anger-r0.01-all-d0") < ids.index("control-anger-r0.01-all-d0")  # each mask's, the null first
    top = next(c for c in plan if c.id == "mask-anger-r0.01-top")
    assert set(top.neurons) <= {4, 5}


@pytest.mark.parametrize("cid", ["control-fear-r0.02-all-d0", "matched-fear-r0.02-all-d0"])
def test_controls_match_sizes_per_layer_and_are_seeded(cid):
    params = section("eval", ratios=(0.01, 0.02), layer_ranges=("all",), control_draws=1, controls=("matched", "uniform"))
    p_active = synthetic_p_active()
    plan = {c.id: c for c in plan_conditions(parse_neurons(synthetic_neurons()), params, 0.01, LAYERS, p_active)}
    mask, control = plan["mask-fear-r0.02-all"], plan[cid]
    assert {l: len(i) for l, i in mask.neurons.items()} == {l: len(i) for l, i in control.neurons.items()}
    assert control.n_neurons == mask.n_neurons and control.mask_key != mask.mask_key
    for idx in control.neurons.values():
        assert len(set(idx.tolist())) == len(idx) and int(idx.max()) < PER_LAYER
    again = {c.id: c for c in plan_conditions(parse_neurons(synthetic_neurons()), params, 0.01, LAYERS, p_active)}
    assert again[cid].mask_key == control.mask_key
    other = {c.id: c for c in plan_conditions(parse_neurons(synthetic_neurons()), params.model_copy(update={"seed": 1}), 0.01, LAYERS, p_active)}
    assert other[cid].mask_key != control.mask_key
    # Adding conditions, or another control kind, does not move an existing condition's draw.
    more = params.model_copy(update={"layer_ranges": ("top", "all"), "controls": ("uniform", "matched")})
    assert {c.id: c for c in plan_conditions(parse_neurons(synthetic_neurons()), more, 0.01, LAYERS, p_active)}[cid].mask_key == control.mask_key


def test_matched_controls_never_hit_the_set_and_match_its_activity_bins():
    params = section("eval", ratios=(0.01, 0.02), layer_ranges=("all",), control_draws=3, controls=("matched",), activity_bins=8)
    p_active = synthetic_p_active()
    plan = {c.id: c for c in plan_conditions(parse_neurons(synthetic_neurons()), params, 0.01, LAYERS, p_active)}
    for emotion in EMOTIONS:
        mask = plan[f"mask-{emotion}-r0.02-all"]
        for draw in range(3):
            control = plan[f"matched-{emotion}-r0.02-all-d{draw}"]
            for layer, idx in mask.neurons.items():
                assert not set(idx.tolist()) & set(control.neurons[layer].tolist())
                # Bins by hand: rank of P(active) in the layer (ties by index), 8 equal-count bins.
                ranked = sorted(range(PER_LAYER), key=lambda i: (float(p_active[layer, i]), i))
                bin_of = {i: r * 8 // PER_LAYER for r, i in enumerate(ranked)}
                assert sorted(bin_of[i] for i in idx.tolist()) == sorted(bin_of[i] for i in control.neurons[layer].tolist())
    with pytest.raises(PlanError, match="matched controls need P.active."):
        plan_conditions(parse_neurons(synthetic_neurons()), params, 0.01, LAYERS)
    with pytest.raises(PlanError, match="counts of a 6 x 32 model"):
        plan_conditions(parse_neurons(synthetic_neurons()), params, 0.01, LAYERS, synthetic_p_active(per_layer=32))


def test_graded_masks_are_the_rq2_masks_scaled_with_their_controls_neurons():
    params = section("eval", ratios=(0.01, 0.02), layer_ranges=("top", "all"), control_draws=2, controls=("matched", "uniform"),
                     scales=(0.0, 0.5, 0.25))
    plan = {c.id: c for c in plan_conditions(parse_neurons(synthetic_neurons()), params, 0.01, LAYERS, synthetic_p_active())}
    graded = [c for c in plan.values() if c.scale]
    assert len(graded) == 2 * 6 * (1 + 2)  # two factors (0 is the plain mask), six emotions, two matched controls each
    for emotion in EMOTIONS:
        plain = plan[f"mask-{emotion}-r0.01-all"]
        for scale in (0.5, 0.25):
            mask = plan[f"mask-{emotion}-r0.01-all-s{scale:g}"]
            assert (mask.kind, mask.scale, mask.ratio, mask.layers) == ("mask", scale, 0.01, "all")
            assert mask.neurons.keys() == plain.neurons.keys() and mask.mask_key != plain.mask_key
            for draw in range(2):  # the verdict's null kind only
                control = plan[f"matched-{emotion}-r0.01-all-s{scale:g}-d{draw}"]
                base = plan[f"matched-{emotion}-r0.01-all-d{draw}"]
                assert control.scale == scale and control.mask_key == base.mask_key + (("scale", scale),)
                assert f"control-{emotion}-r0.01-all-s{scale:g}-d{draw}" not in plan
    assert not [cid for cid in plan if "-r0.02-all-s" in cid or "-top-s" in cid]  # only the RQ2 masks are graded
    assert len(unique_masks(list(plan.values()))) == len({c.mask_key for c in plan.values()})


def test_equal_masks_are_computed_once():
    params = section("eval", ratios=(0.01,), layer_ranges=("top", "all"), control_draws=0, null_draws=0)
    plan = plan_conditions(parse_neurons(synthetic_neurons(ratios=(0.01,))), params, 0.01, LAYERS)
    groups = unique_masks(plan)
    # Sadness lives in the top layers: its top-range mask is its all-layer mask.
    together = [[c.id for c in members] for members in groups.values() if len(members) > 1]
    assert ["mask-sadness-r0.01-all", "mask-sadness-r0.01-top"] in together
    by_id = {c.id: c for c in plan}
    for emotion in EMOTIONS:
        all_layers = by_id[f"mask-{emotion}-r0.01-all"]
        merged = [f"mask-{emotion}-r0.01-all", f"mask-{emotion}-r0.01-top"] in together
        assert merged == (min(all_layers.neurons) >= 4)
    assert sum(len(m) for m in groups.values()) == len(plan)
    assert 4 in first_masked_layers(plan)


@pytest.mark.parametrize(
    ("neurons", "params", "layers", "error", "needle"),
    [
        (synthetic_neurons(ratios=(0.01,)), section("eval", ratios=(0.01, 0.03)), LAYERS, NoSelectionError, "ratio 0.03"),
        (synthetic_neurons(), section("eval", ratios=(0.01,), layer_ranges=("bottom",)), 2, PlanError, "layers"),
        (synthetic_neurons(layers=2), section("eval", ratios=(0.01,), layer_ranges=("bottom",)), 2, PlanError, "'bottom' is empty"),
    ],
)
def test_plan_problems_are_one_line(neurons, params, layers, error, needle):
    with pytest.raises(error) as error:
        plan_conditions(parse_neurons(neurons), params, 0.01, layers)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_shots_come_from_train_seeded_one_per_emotion():
    train = synthetic_split(3)
    shots = draw_shots(train, 1, seed=0)
    assert sorted(e for _, e in shots) == sorted(EMOTIONS)
    assert draw_shots(train, 1, seed=0) == shots
    assert {d for d, _ in draw_shots(train, 2, seed=1)} <= set(train["dialogue"].to_list())
    with pytest.raises(EvalDataError, match="eval.shots needs 4"):
        draw_shots(train, 4, seed=0)
    # The library names no stage path: the caller's name for the table is in the message.
    with pytest.raises(EvalDataError, match=r"^runs/a/train\.parquet: 3 anger dialogues, eval.shots needs 4"):
        draw_shots(train, 4, seed=0, train_name="runs/a/train.parquet")


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread avoids OpenMP spin-waiting on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_evaluate_masking_end_to_end_on_tiny_model(tiny_llama, one_thread):
    n_layers = len(tiny_llama.model.model.layers)
    per_layer = tiny_llama.model.config.intermediate_size
    neurons = synthetic_neurons(ratios=(0.02, 0.04), layers=n_layers, per_layer=per_layer)
    params = section("eval", ratios=(0.02, 0.04), layer_ranges=("top", "all"), control_draws=1, bootstrap=200,
                     controls=("matched", "uniform"), null_draws=0, scales=())
    p_active = synthetic_p_active(n_layers, per_layer)
    evaluation, headline, plan = evaluate_masking(
        tiny_llama, synthetic_split(3), synthetic_split(2, offset=10), parse_neurons(neurons), params, 0.02, batch_size=4, progress=False,
        p_active=p_active, max_length=None, prompt_format="chat")
    conditions = {c["id"]: c for c in evaluation["conditions"]}
    # The plan it ran, planned once and returned (the stage checks eval.json against it), is the plan
    # of these inputs, condition by condition and in eval.json's order.
    assert [(c, c.mask_key) for c in plan] == [(c, c.mask_key) for c in plan_conditions(parse_neurons(neurons), params, 0.02, n_layers, p_active)]
    assert [c.id for c in plan] == list(conditions)
    assert evaluation["n_test"] == 12 and evaluation["n_per_emotion"] == {e: 2 for e in EMOTIONS}
    assert list(conditions)[0] == "unmodified"
    assert len(conditions) == 1 + 18 + 2 * 18
    assert "draw_null" not in evaluation and "dose_response" not in evaluation
    for c in conditions.values():
        assert sum(map(sum, c["confusion"])) + sum(c["unparseable"].values()) == 12
        assert c["ci95"]["overall"][0] <= c["accuracy"]["overall"] <= c["ci95"]["overall"][1]
        assert set(c["accuracy"]) == {*EMOTIONS, "overall"}
    assert conditions["control-anger-r0.02-all-d0"]["n_neurons"] == conditions["mask-anger-r0.02-all"]["n_neurons"]
    assert 0 < evaluation["tokens"]["computed"] < 0.5 * evaluation["tokens"]["naive"]
    base = conditions["unmodified"]["accuracy"]
    assert headline["accuracy_unmodified"] == base["overall"]
    for e in EMOTIONS:
        masked = conditions[f"mask-{e}-r0.02-all"]["accuracy"][e]
        assert headline[f"accuracy_masked_{e}"] == masked
        assert headline[f"drop_{e}"] == pytest.approx(base[e] - masked, abs=1e-4)
        assert f"control_drop_{e}" in headline
    assert isinstance(evaluation["baseline_above_chance"], bool)
    assert (evaluation["calibrate"], evaluation["shot_selection"], evaluation["label_format"]) == ("train_prior", "shortest", "space")
    assert evaluation["shot_instruction"] == "first"
    assert evaluation["recalibrate"] is False  # one fixed prior, from the unmodified run
    assert evaluation["effects"]["test_effect"] == "delta_masked" and evaluation["effects"]["corrected_over"] == 18
    assert evaluation["effects"]["null"] == "matched"
    assert evaluation["effects"]["controls"] == {"matched": {"key": "vs_matched", "corrected_over": 18},
                                                 "uniform": {"key": "vs_control", "corrected_over": 18}}
    for c in conditions.values():
        if c["kind"] == "unmodified":
            assert "effect" not in c and "vs_control" not in c and c["scale"] is None
            continue
        assert c["scale"] == 0.0
        assert len(c["effect"]["delta_true"]["per_dialogue"]) == 12 and len(c["effect"]["delta_masked"]["per_dialogue"]) == 12
        assert ("vs_control" in c) == ("vs_matched" in c) == (c["kind"] == "mask")
        if c["kind"] == "mask":
            for key in ("vs_control", "vs_matched"):
                assert c[key]["verdict"] in {"specific", "not distinguishable from random", "not enough data"}


def test_evaluate_masking_rejects_a_split_missing_an_emotion(tiny_llama):
    test = synthetic_split(1).filter(pl.col("label") != "fear")
    with pytest.raises(EvalDataError, match="^test split: no fear dialogues"):
        evaluate_masking(tiny_llama, synthetic_split(2), test, parse_neurons(synthetic_neurons()), section("eval"), 0.01, progress=False, batch_size=16, max_length=None, prompt_format="chat")
    with pytest.raises(EvalDataError, match=r"^runs/a/test\.parquet: no dialogues to evaluate"):
        evaluate_masking(tiny_llama, synthetic_split(2), test.head(0), parse_neurons(synthetic_neurons()), section("eval"), 0.01, progress=False,
                         test_name="runs/a/test.parquet", batch_size=16, max_length=None, prompt_format="chat")


def test_shortest_selection_picks_the_shortest_train_dialogue_per_emotion():
    train, test = synthetic_split(4), synthetic_split(4, offset=10)
    shots = draw_shots(train, 1, seed=3, selection="shortest")
    labels, dialogues = train["label"].to_list(), train["dialogue"].to_list()
    for dialogue, emotion in shots:
        assert len(dialogue) == min(len(d) for d, l in zip(dialogues, labels) if l == emotion)
        assert dialogue in dialogues
    assert sorted(e for _, e in shots) == sorted(EMOTIONS)
    # Test dialogues never become shots, even when shorter than every train dialogue.
    shorter_test = test.with_columns(pl.col("dialogue").str.slice(0, 5) + pl.col("id"))
    assert not {d for d, _ in draw_shots(train, 2, 0, "shortest")} & set(shorter_test["dialogue"].to_list())
    assert draw_shots(train, 2, seed=0, selection="shortest") != draw_shots(train, 2, seed=0)
    with pytest.raises(ValueError, match="allowed: random, shortest"):
        draw_shots(train, 1, 0, selection="longest")


def test_calibration_dialogues_come_from_train_never_shots():
    train = synthetic_split(6)
    shots = draw_shots(train, 1, seed=0)
    assert calibration_dialogues(train, section("eval", calibrate="none"), shots) == []
    assert calibration_dialogues(train, section("eval", calibrate="content_free"), shots) == [CONTENT_FREE_DIALOGUE]
    params = section("eval", calibrate="train_prior", calibration_per_emotion=3)
    reference = calibration_dialogues(train, params, shots)
    assert reference == calibration_dialogues(train, params, shots)  # seeded
    label_of = dict(zip(train["dialogue"].to_list(), train["label"].to_list()))
    assert len(reference) == 18 and all(label_of[d] for d in reference)
    assert sorted(label_of[d] for d in reference) == sorted(EMOTIONS * 3)
    assert not set(reference) & {d for d, _ in shots}
    # 6 per emotion, every text twice: the shot's text is excluded in both copies, 4 are left.
    with pytest.raises(EvalDataError, match="calibration_per_emotion needs 5"):
        calibration_dialogues(train, section("eval", calibration_per_emotion=5), shots)


def test_paper_zero_shot_setting_stays_available(tiny_llama, one_thread):
    with pytest.raises(ParamsError, match="eval: calibrate: .train_prior. needs method score"):
        params_with({"eval": {"method": "generate", "calibrate": "train_prior"}})
    paper = section("eval", method="generate", shots=0, calibrate="none", label_format="bare", ratios=(0.02,),
                       layer_ranges=("all",), control_draws=0, bootstrap=50, max_new_tokens=2, null_draws=0,
                       controls=("matched", "uniform"))
    neurons = synthetic_neurons(ratios=(0.02,), layers=len(tiny_llama.model.model.layers),
                                per_layer=tiny_llama.model.config.intermediate_size)
    evaluation, _, _ = evaluate_masking(tiny_llama, synthetic_split(1), synthetic_split(1, offset=5), parse_neurons(neurons), paper, 0.02, batch_size=4, progress=False, max_length=None, prompt_format="chat")
    assert (evaluation["shots"], evaluation["calibrate"], evaluation["method"]) == (0, "none", "generate")
    assert len(evaluation["conditions"]) == 1 + 6
    # generate: accuracy with McNemar's exact test; the specificity test runs on the masked answer's change.
    assert evaluation["effects"]["test_effect"] == "masked_answer"
    for condition in evaluation["conditions"][1:]:
        assert set(condition["mcnemar"]) == {"worse", "better", "p"} and 0 <= condition["mcnemar"]["p"] <= 1
        assert set(condition["effect"]) == {"masked_answer"}
        assert set(condition["effect"]["masked_answer"]["per_dialogue"]) <= {-1.0, 0.0, 1.0}
        assert condition["vs_control"]["verdict"] == condition["vs_matched"]["verdict"] == "not enough data"  # no controls drawn


def test_forked_workers_give_the_same_evaluation_as_one_process(tiny_llama, one_thread):
    n_layers = len(tiny_llama.model.model.layers)
    neurons = synthetic_neurons(ratios=(0.02, 0.04), layers=n_layers, per_layer=tiny_llama.model.config.intermediate_size)
    params = section("eval", ratios=(0.02, 0.04), layer_ranges=("bottom", "top", "all"), control_draws=1, bootstrap=100,
                     controls=("uniform",), null_draws=2, scales=(0.5,))
    runs = [evaluate_masking(tiny_llama, synthetic_split(3), synthetic_split(2, offset=10), parse_neurons(neurons), params, 0.02, batch_size=4,
                             progress=False, workers=workers, max_length=None, prompt_format="chat") for workers in (1, 2)]
    assert runs[0] == runs[1]
    assert mask_workers(tiny_llama, 40) == 1  # one thread (the fixture): nothing to split


def test_classify_masks_keeps_only_what_reduce_returns_in_and_out_of_workers(tiny_llama, one_thread, monkeypatch):
    """The draw-level null's extra runs come back as reduce(index, classification) only (one number
    a draw, whatever the number of test dialogues), the same in forked workers as in process; the
    parent hands back its freed heap before it forks (test_mask_pool.py), only then."""
    from emoneurons.evaluate import mask_pool
    from emoneurons.evaluate.classify import Mask, MaskedClassifier
    from emoneurons.evaluate.draw_null import MeanEffect
    from emoneurons.evaluate.mask_pool import classify_masks
    from emoneurons.text.classification_prompt import classification_prompt

    train, test = synthetic_split(3), synthetic_split(2, offset=10)
    prompt = classification_prompt(tiny_llama.tokenizer, draw_shots(train, 1, seed=0), prompt_format="chat")
    engine = MaskedClassifier(tiny_llama, prompt, test["dialogue"].to_list(), "score", batch_size=4, max_new_tokens=8, label_format="bare", recalibrate=False)
    base = engine.classify()
    effect = MeanEffect(base.predicted, base.scores)
    masks = [Mask({1: torch.tensor([0, 3, 7])}), Mask({0: torch.tensor([2, 5])}, 0.5), Mask({2: torch.arange(20)})]

    class Bar:
        def update(self, n):
            pass

    def reduce(index, result):
        return effect(result.predicted, result.scores, "anger")

    by_hand = [effect(*(lambda r: (r.predicted, r.scores))(engine.classify(m.neurons, scale=m.scale)), "anger") for m in masks]
    released = []
    monkeypatch.setattr(mask_pool, "release_freed_memory", lambda: released.append(True))
    for workers in (1, 2):
        kept = classify_masks(engine, masks, workers, Bar(), reduce=reduce)
        assert all(isinstance(v, float) for v in kept) and kept == pytest.approx(by_hand, abs=1e-9)
        assert len(released) == workers - 1
    assert len(set(by_hand)) == 3  # three different masks, three different effects
