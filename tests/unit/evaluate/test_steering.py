"""Steering: the scaling hook (alpha 0 is masking, 1 changes nothing), the plan and its random
controls, the record of shifts, the figure, and the stage's bad-input lines (tiny random Llama)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.conditions import control_seed, random_like
from emoneurons.evaluate.steering import (
    SteerDataError,
    as_dialogue,
    plan_steering,
    read_prompts,
    steered_replies,
    steering_record,
)
from emoneurons.io.neurons_file import NoSelectionError, parse_neurons
from emoneurons.io.steer_file import parse_steer
from emoneurons.neurons.masking import ffn_modules, mask_neurons, neurons_by_layer, scale_neurons, scale_neurons_per_row
from emoneurons.report.steering.figure import save_steering_figure, steering_lines
from helpers.repo_params import section
from helpers.stage_runner import REPO, run_stage_script
from helpers.synthetic_inputs import neurons_json

NEURONS = {0: torch.tensor([1, 5, 9]), 2: torch.tensor([0, 63]), 3: torch.tensor([7])}


def _logits(lm, ids):
    with torch.inference_mode():
        return lm.model(input_ids=ids).logits


@pytest.fixture(scope="module")
def ids(tiny_tokenizer):
    return torch.tensor([tiny_tokenizer.encode("A: What a wonderful day. B: I'm scared of the dark.")])


def test_alpha_zero_is_masking_and_alpha_one_changes_nothing(tiny_llama, ids):
    plain = _logits(tiny_llama, ids)
    with mask_neurons(tiny_llama.model, NEURONS):
        masked = _logits(tiny_llama, ids)
    with scale_neurons(tiny_llama.model, NEURONS, 0.0):
        zero = _logits(tiny_llama, ids)
    with scale_neurons(tiny_llama.model, NEURONS, 1.0):
        one = _logits(tiny_llama, ids)
    assert torch.equal(zero, masked) and not torch.equal(masked, plain)
    assert torch.equal(one, plain)
    assert torch.equal(_logits(tiny_llama, ids), plain)  # hooks removed on exit


def test_alpha_scales_exactly_the_chosen_down_proj_inputs(tiny_llama, ids):
    with scale_neurons(tiny_llama.model, NEURONS, 4.0):
        steered = _logits(tiny_llama, ids)
    # The same scaling written into the weights: down_proj(x * s) = (W * s) x.
    mlps = ffn_modules(tiny_llama.model)
    saved = {layer: mlps[layer].down_proj.weight.clone() for layer in NEURONS}
    try:
        for layer, index in NEURONS.items():
            mlps[layer].down_proj.weight[:, index] *= 4.0
        reference = _logits(tiny_llama, ids)
    finally:
        for layer, weight in saved.items():
            mlps[layer].down_proj.weight.copy_(weight)
    assert torch.allclose(steered, reference, atol=1e-5)
    with pytest.raises(ValueError, match="layer 9 is outside"):
        with scale_neurons(tiny_llama.model, {9: torch.tensor([0])}, 2.0):
            pass


def test_hook_is_removed_when_the_body_raises(tiny_llama, ids):
    plain = _logits(tiny_llama, ids)
    with pytest.raises(RuntimeError):
        with scale_neurons(tiny_llama.model, NEURONS, 8.0):
            raise RuntimeError("boom")
    assert torch.equal(_logits(tiny_llama, ids), plain)


def test_per_row_scaling_equals_scaling_each_row_alone(tiny_llama, tiny_tokenizer):
    texts = ["A: What a wonderful day.", "B: I'm scared of the dark.", "A: Oh no, that is terrible.", "A: I miss her."]
    ids = torch.tensor([tiny_tokenizer.encode(t)[:6] for t in texts])
    other = {1: torch.tensor([2, 3]), 3: torch.tensor([7, 8, 40])}
    rows = [(NEURONS, 0.0), (NEURONS, 4.0), ({}, 1.0), (other, 8.0)]
    with scale_neurons_per_row(tiny_llama.model, rows):
        together = _logits(tiny_llama, ids)
    for b, (neurons, alpha) in enumerate(rows):
        with scale_neurons(tiny_llama.model, neurons, alpha):
            alone = _logits(tiny_llama, ids[b : b + 1])
        assert torch.allclose(together[b : b + 1], alone, atol=1e-5), b
    assert torch.allclose(together[2:3], _logits(tiny_llama, ids[2:3]), atol=1e-5)
    with pytest.raises(ValueError, match="a batch of 2 rows, 4 were given"):
        with scale_neurons_per_row(tiny_llama.model, rows):
            _logits(tiny_llama, ids[:2])


def test_steered_replies_are_greedy_and_do_not_depend_on_batching(tiny_llama):
    prompts = ["Tell me about your morning.", "What should I cook?", "Describe the weather."]
    big = {layer: torch.arange(64) for layer in range(4)}
    conditions = [({}, 1.0), (NEURONS, 1.0), (big, 8.0), (big, 0.0)]
    batched = steered_replies(tiny_llama, prompts, conditions, max_new_tokens=6, batch_size=5, prompt_format="chat")
    assert len(batched) == 4 and all(len(replies) == 3 for replies in batched)
    assert batched[0] == batched[1]  # alpha 1 changes nothing
    assert batched[2] != batched[0]
    assert batched == steered_replies(tiny_llama, prompts, conditions, max_new_tokens=6, batch_size=12, prompt_format="chat")
    assert batched[2:3] == steered_replies(tiny_llama, prompts, conditions[2:3], max_new_tokens=6, batch_size=3, prompt_format="chat")


def _neurons_json(empty: str = "fear") -> dict:
    selected = {e: [[i % 4, 3 * i], [3, 10 + i]] for i, e in enumerate(EMOTIONS)}
    selected[empty] = []
    return neurons_json({0.01: selected}, 4, 64)


def test_plan_steers_each_emotion_with_same_count_random_controls():
    params = section("steer", alphas=(0, 2, 8), control_draws=2, seed=3)
    plan = plan_steering(parse_neurons(_neurons_json()), 0.01, params)
    assert {c.emotion for c in plan} == set(EMOTIONS) - {"fear"}  # no neurons: nothing to steer
    anger = [c for c in plan if c.emotion == "anger"]
    assert [(c.alpha, c.control, c.draw) for c in anger] == [
        (0, False, None), (2, False, None), (8, False, None), (0, True, 0), (2, True, 0), (8, True, 0),
        (0, True, 1), (2, True, 1), (8, True, 1)]
    own = neurons_by_layer(_neurons_json()["ratios"]["0.01"]["neurons"]["anger"])
    for c in anger[3:]:
        assert {k: v.numel() for k, v in c.neurons.items()} == {k: v.numel() for k, v in own.items()}
    expected = random_like(own, 64, control_seed(3, "steer-anger-d1"))
    assert all(torch.equal(anger[-1].neurons[k], expected[k]) for k in expected)
    with pytest.raises(NoSelectionError, match="no selection at ratio 0.05 "):
        plan_steering(parse_neurons(_neurons_json()), 0.05, params)


def test_record_reports_shares_and_log_p_shifts_against_the_unmodified_replies():
    params = section("steer", alphas=(0, 4), control_draws=1)
    plan = plan_steering(parse_neurons(_neurons_json()), 0.01, params)
    prompts = ["p1", "p2"]
    n = len(prompts) * (1 + len(plan))
    predicted = ["happiness"] * n
    logp = torch.full((n, 6), -2.0)
    # anger at alpha 4 (the 2nd condition): both replies anger, log p(anger) up by 1.5 on average
    predicted[2 * 2 : 2 * 3] = ["anger", "anger"]
    logp[2 * 2 : 2 * 3, 0] = torch.tensor([-1.0, 0.0])
    replies = [f"r{i}" for i in range(n)]
    record = steering_record(prompts, plan, predicted, logp, replies, {"anger": 2, "fear": 0})
    assert record["unmodified"]["per_emotion"]["anger"] == {"share": 0.0, "logp": -2.0}
    steered = record["emotions"]["anger"]["steered"]
    assert [s["alpha"] for s in steered] == [0, 4]
    assert steered[1]["share_shift"] == 1.0 and steered[1]["logp_shift"] == 1.5
    assert steered[1]["replies"] == ["r4", "r5"] and steered[0]["share_shift"] == 0.0
    assert record["emotions"]["anger"]["controls"][0]["draw"] == 0
    assert record["emotions"]["fear"] == {"n_neurons": 0, "steered": [], "controls": []}
    no_logp = steering_record(prompts, plan, predicted, None, replies, {})
    assert no_logp["emotions"]["anger"]["steered"][1]["logp_shift"] is None


def test_figure_has_a_line_per_emotion_through_alpha_one(tmp_path):
    params = section("steer", alphas=(0, 4), control_draws=1)
    plan = plan_steering(parse_neurons(_neurons_json()), 0.01, params)
    n = 2 * (1 + len(plan))
    record = steering_record(["a", "b"], plan, ["anger"] * n, torch.zeros(n, 6), ["x"] * n, {})
    record |= {"model": "tiny", "top_rate": 0.01, "alphas": [0, 4], "max_new_tokens": 4, "control_draws": 1,
               "prompts": ["a", "b"], "classifier": {}}
    lines = steering_lines(parse_steer(record), "share_shift")
    assert set(lines) == set(EMOTIONS) - {"fear"}
    assert [alpha for alpha, _ in lines["anger"]["steered"]] == [0.0, 1.0, 4.0]
    png, svg = save_steering_figure(parse_steer(record), tmp_path)
    assert png.stat().st_size > 1000 and svg.read_text().startswith("<?xml")


def test_prompts_file_ships_thirty_neutral_openings_and_a_short_file_is_one_line(tmp_path):
    shipped = read_prompts(REPO / "data/steer/prompts.txt", 30)
    assert len(set(shipped)) == 30
    assert not any(e in p.lower() for p in shipped for e in EMOTIONS)
    short = tmp_path / "p.txt"
    short.write_text("# comment\nhello\n\nthere\n")
    assert read_prompts(short, 2) == ["hello", "there"]
    with pytest.raises(SteerDataError, match=r"p.txt: 2 prompts, steer.prompts asks for 3"):
        read_prompts(short, 3)
    assert as_dialogue("Hi.", "  Fine,\n thanks ") == "A: Hi.\nB: Fine, thanks"


def test_stage_rejects_alpha_out_of_range_in_one_line_before_any_work(tmp_path):
    # Other out-of-range values are in tests/unit/test_params.py; this is the stage's own exit.
    message = "steer.alphas.1: Input should be less than or equal to 100"
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["steer"]["alphas"] = [2, 101]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "steer"
    result = run_stage_script("steer", "--params", tmp_path / "params.yaml", "--out", out, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [next(line for line in result.stderr.splitlines() if message in line)]
    assert not out.exists()


def _steer_project(tmp_path, tiny_llama, per_emotion: int) -> dict:
    """A folder the steer stage runs in: the tiny model, a train split of `per_emotion` dialogues
    per emotion, a selection, params with the lexicon judge; returns the selection."""
    import json

    from transformers import LlamaConfig, LlamaForCausalLM

    from helpers.synthetic_inputs import synthetic_neurons, synthetic_split

    # The tiny model's shape with 15x its initial weight scale: the default's near-uniform logits
    # answer "\n\n" to everything, whatever is steered; these give replies that steering changes.
    torch.manual_seed(0)
    sharp = LlamaForCausalLM(LlamaConfig(**{**tiny_llama.model.config.to_dict(), "initializer_range": 0.3})).eval()
    sharp.save_pretrained(tmp_path / "tiny-llama")
    tiny_llama.tokenizer.save_pretrained(tmp_path / "tiny-llama")
    (tmp_path / "data" / "split").mkdir(parents=True)
    synthetic_split(per_emotion).write_parquet(tmp_path / "data" / "split" / "train.parquet")
    (tmp_path / "data" / "neurons").mkdir()
    config = tiny_llama.model.config
    neurons = synthetic_neurons(ratios=(0.05,), layers=config.num_hidden_layers, per_layer=config.intermediate_size)
    (tmp_path / "data" / "neurons" / "neurons.json").write_text(json.dumps(neurons))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(id=str(tmp_path / "tiny-llama"), batch_size=8)
    params["select"]["top_rate"] = 0.05
    params["steer"].update(alphas=[0, 8], prompts=2, max_new_tokens=4, control_draws=1)
    params["filter"]["judges"] = [{"name": "lexicon", "backend": "lexicon"}]
    params["eval"].update(method="score", shots=1, calibrate="train_prior", calibration_per_emotion=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return neurons


def _steer_stage(tmp_path) -> subprocess.CompletedProcess:
    return run_stage_script("steer", "--prompts", REPO / "data/steer/prompts.txt", cwd=tmp_path, timeout=600, isolated=True)


def weight_surgery_replies(model_dir: Path, prompts: list[str], neurons: dict[int, list[int]], alpha: float,
                           max_new_tokens: int) -> list[str]:
    """The steering reference, built without the steering code: a fresh copy of the saved model with
    the chosen columns of down_proj.weight multiplied by alpha (down_proj(x * s) = (W * s) x, so
    every token's activation of those neurons is scaled by alpha), then a plain greedy loop, one
    prompt at a time, no padding and no cache: the argmax token until an end-of-turn or the limit."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        for layer, columns in neurons.items():
            model.model.layers[layer].mlp.down_proj.weight[:, columns] *= alpha
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    replies = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        ids = tokenizer.encode(text, add_special_tokens=False)
        new: list[int] = []
        with torch.no_grad():
            for _ in range(max_new_tokens):
                token = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
                if token in eos:
                    break
                new.append(token)
        replies.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return replies


def test_stage_has_the_filters_judges_label_the_replies(tmp_path, tiny_llama):
    # The tiny model and the offline lexicon judge, through the stage as dvc runs it: each reply's
    # judge label, and per emotion and alpha the share the judge gives the steered emotion.
    import json

    from emoneurons.backends.lexicon import lexicon_labels

    neurons = _steer_project(tmp_path, tiny_llama, 4)
    result = _steer_stage(tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "reports" / "steer" / "steer.json").read_text())
    assert record["judges"] == [{"name": "lexicon", "backend": "lexicon"}]
    assert record["classifier"]["prompt_format"] == "chat"  # eval.prompt_format auto, resolved once for the loaded model
    prompts = record["prompts"]
    base = record["unmodified"]
    base_labels = lexicon_labels([as_dialogue(p, r) for p, r in zip(prompts, base["replies"])])
    assert base["judges"]["lexicon"]["labels"] == base_labels
    steered = 0
    for emotion, entry in record["emotions"].items():
        for step in entry["steered"] + entry["controls"]:
            labels = lexicon_labels([as_dialogue(p, r) for p, r in zip(prompts, step["replies"])])
            judged = step["judges"]["lexicon"]
            share = sum(label == emotion for label in labels) / len(labels)
            assert judged["labels"] == labels and judged["share"] == round(share, 4)
            assert judged["share_shift"] == round(share - sum(label == emotion for label in base_labels) / len(labels), 4)
            steered += 1
    assert steered == 2 * 2 * sum(1 for e in EMOTIONS if neurons["ratios"]["0.05"]["neurons"][e])

    # Every condition's replies are those of the model with its neurons scaled in the weights. The
    # steered sets are read from neurons.json here; the control sets from the stage's plan, checked
    # to be as many per layer as the emotion's own, distinct, in range, and not the emotion's own.
    model_dir, limit = tmp_path / "tiny-llama", record["max_new_tokens"]
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    controls = {(c.emotion, c.alpha, c.draw): c.neurons for c in plan_steering(parse_neurons(neurons), 0.05, section("steer", **params["steer"]))
                if c.control}
    assert base["replies"] == weight_surgery_replies(model_dir, prompts, {}, 1.0, limit)
    changed = 0
    for emotion, entry in record["emotions"].items():
        own: dict[int, list[int]] = {}
        for layer, index in neurons["ratios"]["0.05"]["neurons"][emotion]:
            own.setdefault(layer, []).append(index)
        for step in entry["steered"]:
            expected = weight_surgery_replies(model_dir, prompts, own, step["alpha"], limit)
            assert step["replies"] == expected, (emotion, step["alpha"])
            changed += expected != base["replies"]
        for step in entry["controls"]:
            drawn = {layer: idx.tolist() for layer, idx in controls[(emotion, step["alpha"], step["draw"])].items()}
            assert {layer: len(idx) for layer, idx in drawn.items()} == {layer: len(idx) for layer, idx in own.items()}
            assert all(len(set(idx)) == len(idx) and 0 <= min(idx) and max(idx) < 64 for idx in drawn.values())
            assert drawn != {layer: sorted(idx) for layer, idx in own.items()}
            assert step["replies"] == weight_surgery_replies(model_dir, prompts, drawn, step["alpha"], limit), (emotion, "control")
    assert changed >= 3  # steering visibly changes replies here: unsteered conditions could not pass
    _check_coherence(record, model_dir, params)
    assert ", judge lexicon " in result.stdout and ", log-lik/token " in result.stdout
    _check_printed_counts(result, record)
    assert (tmp_path / "data" / "cache" / "llm" / "steer" / "README.txt").is_file()  # the stage's (persist) cache output
    # The data checks that ran on steer.json are saved beside it, all passed, the alphas among them.
    checks = json.loads((tmp_path / "reports" / "steer" / "checks.json").read_text())
    assert checks["ran"] == checks["passed"] == len(checks["expectations"]) >= 5
    assert {e["file"] for e in checks["expectations"]} == {"reports/steer/steer.json"}
    assert ("every alpha once per emotion and control draw", "alpha") in {(e["expectation"], e["column"]) for e in checks["expectations"]}


def _check_printed_counts(result: subprocess.CompletedProcess, record: dict) -> None:
    """The summary line and both progress bars count what steer.json holds: its conditions (the
    unmodified model apart), its prompts, its replies, and its distinct (prompt, reply) pairs."""
    import re

    prompts = record["prompts"]
    steps = [step for entry in record["emotions"].values() for step in entry["steered"] + entry["controls"]]
    replies = [(p, r) for p, r in zip(prompts, record["unmodified"]["replies"])]
    replies += [(p, r) for step in steps for p, r in zip(prompts, step["replies"])]
    distinct = len({as_dialogue(p, r) for p, r in replies})
    assert record["classified"] == distinct
    headline = re.match(r"steer: \(unmodified \+ (\d+) conditions\) x (\d+) prompts = (\d+) replies, (\d+) distinct ones classified;",
                        result.stdout)
    assert headline, result.stdout
    assert [int(n) for n in headline.groups()] == [len(steps), len(prompts), len(replies), distinct]
    bar = re.findall(r"steer \(unmodified \+ (\d+) conditions\) x (\d+) prompts: 100%\|[^|]*\| (\d+)/(\d+)", result.stderr)
    assert bar and [int(n) for n in bar[-1]] == [len(steps), len(prompts), len(replies), len(replies)], result.stderr
    classify = re.findall(r"classify (\d+) distinct replies of (\d+)", result.stderr)
    assert classify and [int(n) for n in classify[-1]] == [distinct, len(replies)], result.stderr


def _check_coherence(record: dict, model_dir: Path, params: dict) -> None:
    """Every condition's coherence is there and finite, summarises its replies, and the unmodified
    model's log-likelihood per token of each reply is the plain forward's (test_coherence's reference)."""
    import math

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emoneurons.evaluate.coherence import repeated_ngram_share, reply_words
    from emoneurons.model.loading import LoadedModel
    from helpers.references import reference_logp_per_token

    steer = params["steer"]
    assert record["coherence"] == {"ngram": steer["coherence_ngram"], "broke_logp_drop": steer["broke_logp_drop"],
                                   "broke_repeat_rise": steer["broke_repeat_rise"]}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lm = LoadedModel(model=AutoModelForCausalLM.from_pretrained(model_dir).eval(), tokenizer=tokenizer, name="tiny")
    contexts = [tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                               add_generation_prompt=True), add_special_tokens=False)
                for p in record["prompts"]]
    conditions = [record["unmodified"]] + [c for e in record["emotions"].values() for c in e["steered"] + e["controls"]]
    assert len(conditions) == 1 + 2 * 2 * sum(1 for e in record["emotions"].values() if e["n_neurons"])
    fields = ("logp_per_token", "repeated_share", "logp_per_token_shift", "repeated_share_shift")
    for i, condition in enumerate(conditions):
        coherence = condition["coherence"]
        for name in fields[:2] if i == 0 else fields:
            assert isinstance(coherence[name], float) and math.isfinite(coherence[name]), (i, name, coherence[name])
        assert i == 0 or isinstance(coherence["text_broke"], bool)
        per_reply = coherence["replies"]
        assert per_reply["repeated_share"] == [round(repeated_ngram_share(reply_words(r), steer["coherence_ngram"]), 4)
                                               for r in condition["replies"]]
        for context, reply, value in zip(contexts, condition["replies"], per_reply["logp_per_token"]):
            ids = tokenizer.encode(reply, add_special_tokens=False)
            assert (value is None) == (not ids)
            if ids:
                assert abs(value - reference_logp_per_token(lm, context, ids)) < 1e-4, (i, reply)


def test_stage_rejects_a_train_split_too_small_for_the_classifier_before_any_work(tmp_path, tiny_llama):
    _steer_project(tmp_path, tiny_llama, 1)
    result = _steer_stage(tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "data/split/train.parquet: 0 anger dialogues besides the shots, eval.calibration_per_emotion needs 2; lower it, "
        "use eval.calibrate: content_free, or generate more dialogues"]  # no generation progress bar before it
    assert not (tmp_path / "reports").exists() and not (tmp_path / "data" / "cache").exists()
