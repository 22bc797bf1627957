"""Dialogues longer than the model's context: cut by one explicit rule (a dialogue's own tokens
past its budget, from the end) and reported by count (meta.json) and mask-eval (eval.json)."""

from __future__ import annotations

import pytest

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.calibration import calibration_dialogues
from emoneurons.evaluate.masking_eval import evaluate_masking
from emoneurons.evaluate.prompt_budget import dialogue_budget
from emoneurons.evaluate.shots import EvalDataError, draw_shots
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.neurons.counting import counting_inputs
from emoneurons.text.classification_prompt import classification_prompt
from emoneurons.text.truncation import Truncation, cut_dialogues
from helpers.repo_params import section
from helpers.synthetic_inputs import synthetic_neurons, synthetic_split

LONG = "A: " + "I am so angry about this, " * 30 + "really.\nB: Calm down."
SHORT = "A: Hi.\nB: Hello."


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def test_cut_keeps_a_prefix_of_the_dialogue_within_budget_and_counts_the_cut(tiny_tokenizer):
    long_ids = _ids(tiny_tokenizer, LONG)
    truncation = Truncation(max_length=100, budget=20)
    kept = cut_dialogues(tiny_tokenizer, [SHORT, LONG, LONG[:40]], truncation)
    assert kept[0] == SHORT
    assert LONG.startswith(kept[1]) and len(kept[1]) < len(LONG)
    assert _ids(tiny_tokenizer, kept[1]) == long_ids[:20]
    short_cut = max(len(_ids(tiny_tokenizer, LONG[:40])) - 20, 0)
    assert truncation.record() == {
        "max_length": 100, "budget": 20, "dialogues": 1 + (short_cut > 0),
        "tokens_cut": len(long_ids) - 20 + short_cut, "longest_cut": len(long_ids) - 20,
    }
    line = truncation.describe(3, "count")
    assert "\n" not in line and f"{truncation.dialogues} of 3 dialogues" in line and "model.max_length 100" in line
    # mask-eval's cut counts calibration dialogues beside the test ones: no "of <test dialogues>"
    assert f"mask-eval: {truncation.dialogues} dialogues longer" in truncation.describe(None, "mask-eval")


def test_counting_reports_what_max_length_cut(tiny_tokenizer):
    items, truncation = counting_inputs(
        tiny_tokenizer, [SHORT, LONG], ["anger", "fear"], text="dialogue", positions="all", max_length=16
    )
    prefix = len(items[0].ids) - len(_ids(tiny_tokenizer, SHORT))  # BOS or nothing
    assert max(len(item.ids) for item in items) == 16
    assert (truncation.dialogues, truncation.tokens_cut) == (1, prefix + len(_ids(tiny_tokenizer, LONG)) - 16)
    assert truncation.budget == 16 - prefix


def test_mask_eval_cuts_to_the_context_and_reports_it(tiny_llama):
    train, test = synthetic_split(3), synthetic_split(2, offset=10)
    params = section("eval", ratios=(0.02,), layer_ranges=("all",), control_draws=0, bootstrap=50, null_draws=0)
    neurons = synthetic_neurons(ratios=(0.02,), layers=len(tiny_llama.model.model.layers),
                                per_layer=tiny_llama.model.config.intermediate_size)
    shots = draw_shots(train, params.shots, params.seed, params.shot_selection)
    prompt = classification_prompt(tiny_llama.tokenizer, shots, params.shot_instruction, prompt_format="chat")
    room = 4096 - dialogue_budget(tiny_llama, prompt, params, 4096)  # the prompt and the answer
    lengths = [len(_ids(tiny_llama.tokenizer, d)) for d in
               [*test["dialogue"].to_list(), *calibration_dialogues(train, params, shots)]]
    budget = sorted(lengths)[len(lengths) // 2]  # about half of them are cut
    run = lambda max_length: evaluate_masking(  # noqa: E731
        tiny_llama, train, test, parse_neurons(neurons), params, 0.02, batch_size=4, progress=False, workers=1, max_length=max_length, prompt_format="chat")[0]
    cut = run(room + budget)
    assert cut["truncated"] == {
        "max_length": room + budget, "budget": budget, "dialogues": sum(n > budget for n in lengths),
        "tokens_cut": sum(max(n - budget, 0) for n in lengths), "longest_cut": max(lengths) - budget,
    }
    assert cut["truncated"]["dialogues"] > 0
    whole = run(room + max(lengths))
    assert whole["truncated"]["dialogues"] == 0
    assert whole["conditions"] == run(None)["conditions"]  # nothing cut: the same as no limit
    with pytest.raises(EvalDataError, match=r"model.max_length: .* leave no room for a dialogue"):
        run(room)
    assert cut["n_per_emotion"] == {e: 2 for e in EMOTIONS}
