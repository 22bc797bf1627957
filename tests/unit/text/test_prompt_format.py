"""eval.prompt_format: base models (a tokenizer without a chat template) get the plain format,
the same in count (text: prompt), mask-eval, the hf judges and the hf chat backend. The format is
resolved once, where the model is loaded: everything below it takes chat or plain and refuses auto."""

from __future__ import annotations

import copy

import polars as pl
import pytest
import torch

from emoneurons.backends.cache import cache_key
from emoneurons.backends.chat import ChatRequest
from emoneurons.backends.hf_generate import HFChatBackend, sampling_fields
from emoneurons.backends.judges import HFJudge, labelling_prompt
from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.classify import classify
from emoneurons.evaluate.masking_eval import evaluate_masking
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.model.loading import LoadedModel
from emoneurons.neurons.counting import counting_inputs
from emoneurons.params import ParamsError
from emoneurons.text.chat_prompt import dialogue_ids, user_turn_prompt
from emoneurons.text.classification_prompt import classification_prompt
from emoneurons.text.paper_prompts.classify import CLASSIFY_SYSTEM_PROMPT, CLASSIFY_USER_PROMPT
from emoneurons.text.prompt_format import PromptFormatError, prompt_text, render_plain, resolve_prompt_format, resolved
from helpers.repo_params import section
from helpers.synthetic_inputs import neurons_json

DIALOGUE = "A: That smell is revolting.\nB: I'm scared of the dark."
SHOTS = [("A: What a wonderful day.", "happiness"), ("A: I miss her so much.", "sadness")]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base_tokenizer(tiny_tokenizer):
    """The tiny tokenizer as a base model's: no chat template, BOS added before a text."""
    from tokenizers import processors

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = None
    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)]
    )
    return tokenizer


@pytest.fixture(scope="module")
def base_lm(tiny_llama, base_tokenizer):
    return LoadedModel(model=tiny_llama.model, tokenizer=base_tokenizer, name="tiny-random-llama-base")


def test_auto_is_chat_with_a_template_and_plain_without(tiny_tokenizer, base_tokenizer):
    assert resolve_prompt_format(tiny_tokenizer, "auto") == "chat"
    assert resolve_prompt_format(base_tokenizer, "auto") == "plain"
    assert resolve_prompt_format(tiny_tokenizer, "plain") == "plain"
    with pytest.raises(PromptFormatError) as info:
        resolve_prompt_format(base_tokenizer, "chat")
    message = str(info.value)
    assert "\n" not in message and message.startswith("eval.prompt_format: chat") and "allowed for it: plain, auto" in message
    assert isinstance(info.value, ParamsError)  # the stages report it like any params problem
    with pytest.raises(PromptFormatError, match="allowed: chat, plain, auto"):
        resolve_prompt_format(tiny_tokenizer, "xml")


def test_plain_classification_prompt_is_bos_and_role_lines(base_tokenizer):
    prompt = classification_prompt(base_tokenizer, SHOTS, "first", prompt_format="plain")
    ids = prompt.ids(dialogue_ids(base_tokenizer, DIALOGUE))
    assert ids[0] == base_tokenizer.bos_token_id and base_tokenizer.bos_token_id not in ids[1:]
    expected = render_plain([
        ("system", CLASSIFY_SYSTEM_PROMPT),
        ("user", CLASSIFY_USER_PROMPT.format(prompt=SHOTS[0][0])), ("assistant", SHOTS[0][1]),
        ("user", SHOTS[1][0]), ("assistant", SHOTS[1][1]),
        ("user", CLASSIFY_USER_PROMPT.format(prompt=DIALOGUE)),
    ])
    assert base_tokenizer.decode(ids[1:]) == expected
    assert expected.endswith("\nassistant:")
    # The same request on a chat tokenizer: its template by default, the plain lines when asked.
    labelling = labelling_prompt(base_tokenizer, "plain")
    assert base_tokenizer.decode(labelling.ids([])).count("assistant:") == 1


def test_plain_can_be_asked_of_a_chat_tokenizer(tiny_tokenizer):
    chat = classification_prompt(tiny_tokenizer, SHOTS, prompt_format="chat")
    plain = classification_prompt(tiny_tokenizer, SHOTS, prompt_format="plain")
    assert "<|im_start|>" in tiny_tokenizer.decode(chat.prefix)
    assert "<|im_start|>" not in tiny_tokenizer.decode(plain.prefix)
    assert tiny_tokenizer.decode(plain.suffix).endswith("]\nassistant:")



def test_count_text_prompt_counts_the_dialogue_inside_the_plain_prompt(base_tokenizer):
    items, _ = counting_inputs(base_tokenizer, [DIALOGUE], ["fear"], text="prompt", positions="all", max_length=512,
                               prompt_format="plain")
    prefix = classification_prompt(base_tokenizer, prompt_format="plain").prefix
    own = dialogue_ids(base_tokenizer, DIALOGUE)
    assert items[0].ids == (*prefix, *own) and (items[0].start, items[0].end) == (len(prefix), len(prefix) + len(own))
    with pytest.raises(ValueError, match="needs the resolved prompt format"):  # text: prompt, no format
        counting_inputs(base_tokenizer, [DIALOGUE], ["fear"], text="prompt", positions="all", max_length=512)


def _split(per_emotion: int, offset: int = 0) -> pl.DataFrame:
    rows = [(e, f"A: Number {k + offset} feels like {e}.\nB: Oh." * (1 + k % 2)) for e in EMOTIONS for k in range(per_emotion)]
    return pl.DataFrame({"label": [r[0] for r in rows], "theme": [r[0] for r in rows], "dialogue": [r[1] for r in rows]})


def test_mask_eval_on_a_base_model_uses_and_reports_the_plain_format(base_lm):
    layers, per_layer = len(base_lm.model.model.layers), base_lm.model.config.intermediate_size
    neurons = neurons_json({0.02: {e: [[layers - 1, i]] for i, e in enumerate(EMOTIONS)}}, layers, per_layer)
    params = section("eval", ratios=(0.02,), layer_ranges=("all",), control_draws=0, bootstrap=50, calibrate="none", shots=1, null_draws=0)
    train, test = _split(2), _split(1, offset=10)
    prompt_format = resolve_prompt_format(base_lm.tokenizer, params.prompt_format)  # as the stage does, once
    evaluation, _, _ = evaluate_masking(base_lm, train, test, parse_neurons(neurons), params, 0.02, prompt_format=prompt_format, batch_size=4,
                                     progress=False, workers=1, max_length=None)
    assert evaluation["prompt_format"] == "plain" and evaluation["engine"] == "layered"
    from emoneurons.evaluate.shots import draw_shots

    prompt = classification_prompt(base_lm.tokenizer, draw_shots(train, 1, 0, "shortest"), "first", prompt_format="plain")
    expected = classify(base_lm, prompt, test["dialogue"].to_list(), "score", batch_size=4, label_format="space", max_new_tokens=8).predicted
    unmodified = next(c for c in evaluation["conditions"] if c["id"] == "unmodified")
    confusion = [[0] * len(EMOTIONS) for _ in EMOTIONS]  # one test row per emotion: the matrix is every prediction
    for predicted, true in zip(expected, test["label"].to_list()):
        confusion[EMOTIONS.index(true)][EMOTIONS.index(predicted)] += 1
    assert unmodified["confusion"] == confusion


def test_hf_judge_labels_with_the_plain_labelling_prompt(base_lm):
    dialogues = [DIALOGUE, "A: What a wonderful day."]
    expected = classify(base_lm, labelling_prompt(base_lm.tokenizer, "plain"), dialogues, "score", batch_size=2, max_new_tokens=8, label_format="bare").predicted
    assert HFJudge("base", base_lm, "score", 2, "plain", classify=classify).label(dialogues) == expected


def test_hf_backend_renders_plain_with_bos_and_keys_the_format(base_lm, tiny_llama, tmp_path):
    messages = (("system", "You are a helpful assistant"), ("user", "Name a topic."))
    assert prompt_text(base_lm.tokenizer, messages, "plain") == render_plain(messages)
    assert prompt_text(tiny_llama.tokenizer, messages, "plain") == render_plain(messages)
    assert "<|im_start|>" in prompt_text(tiny_llama.tokenizer, messages, "chat")
    generation = section("generate.hf", temperature=0.0, max_new_tokens=3)
    backend = HFChatBackend(base_lm, generation, tmp_path, seed=0, batch_size=16, prompt_format="plain", progress=False)
    assert backend.prompt_format == "plain"
    request = ChatRequest(messages=messages)
    [answer] = backend.complete([request])
    ids = base_lm.tokenizer(render_plain(messages), return_tensors="pt")["input_ids"]
    assert int(ids[0, 0]) == base_lm.tokenizer.bos_token_id  # plain text gets the tokenizer's BOS
    for _ in range(3):
        ids = torch.cat([ids, base_lm.model(ids).logits[0, -1].argmax().view(1, 1)], dim=1)
    # The random model never says EOS in 3 tokens: the reply is cut off, so it is cached (paid
    # for) but not returned as an answer; the cached text is the greedy continuation of the plain prompt.
    assert answer is None and backend.last_cut_off == {0}
    cached = backend.cache.get(cache_key(backend.request_fields(request)))
    assert cached.finish_reason == "length"
    assert cached.text.strip() == base_lm.tokenizer.decode(ids[0, -3:], skip_special_tokens=True).strip()
    # The cache key: unchanged for chat-template prompts, marked for plain ones.
    chat_fields = sampling_fields(generation, 0, torch.float32, "chat")
    assert "prompt_format" not in chat_fields and sampling_fields(generation, 0, torch.float32, "plain") == chat_fields | {"prompt_format": "plain"}
    with pytest.raises(ValueError, match="'auto' is not resolved"):
        HFChatBackend(base_lm, generation, tmp_path, seed=0, batch_size=16, progress=False, prompt_format="auto")


@pytest.mark.parametrize("model", ["tiny_llama", "base_lm"])  # chat template / plain
def test_the_hf_backend_sends_the_prompt_the_judges_and_classifier_render(request, model, tmp_path):
    """One renderer: the text the hf chat backend generates from is text/prompt_format's, the
    strings it sent before the fold, and its tokens are text/chat_prompt's around the dialogue."""
    lm = request.getfixturevalue(model)
    backend = HFChatBackend(lm, section("generate.hf", temperature=0.0, max_new_tokens=1), tmp_path, seed=0, batch_size=16,
                            prompt_format=resolve_prompt_format(lm.tokenizer, "auto"), progress=False)
    sent: list[str] = []
    backend.generate = lambda prompts, seeds: (sent.extend(prompts), [("x", 1, 1, "stop")] * len(prompts))[1]
    user_text = lambda dialogue: f"Label this dialogue:\n{dialogue}"  # noqa: E731
    backend.complete([ChatRequest(messages=(("user", user_text(DIALOGUE)),))])
    expected = {"chat": f"<|im_start|>user\nLabel this dialogue:\n{DIALOGUE}<|im_end|>\n<|im_start|>assistant\n",
                "plain": f"user: Label this dialogue:\n{DIALOGUE}\nassistant:"}
    assert sent == [expected[backend.prompt_format]]
    assert sent == [prompt_text(lm.tokenizer, (("user", user_text(DIALOGUE)),), backend.prompt_format)]
    sent_ids = lm.tokenizer.encode(sent[0], add_special_tokens=backend.prompt_format == "plain")
    judged = user_turn_prompt(lm.tokenizer, user_text, backend.prompt_format)
    assert sent_ids == judged.ids(dialogue_ids(lm.tokenizer, DIALOGUE))


def test_below_the_load_the_format_is_resolved_and_auto_is_refused(tiny_tokenizer, tiny_llama, tmp_path):
    """`auto` resolved a second time, below where the model was loaded, could disagree with the
    first (another tokenizer): the renderers refuse it instead of resolving it again."""
    assert resolved("chat") == "chat" and resolved("plain") == "plain"
    messages = (("user", "Name a topic."),)
    for render in (lambda: prompt_text(tiny_tokenizer, messages, "auto"),
                   lambda: classification_prompt(tiny_tokenizer, SHOTS, prompt_format="auto"),
                   lambda: labelling_prompt(tiny_tokenizer, "auto"),
                   lambda: counting_inputs(tiny_tokenizer, [DIALOGUE], ["fear"], text="prompt", positions="all", max_length=512,
                                           prompt_format="auto"),
                   lambda: HFChatBackend(tiny_llama, section("generate.hf"), tmp_path, seed=0, batch_size=2, prompt_format="auto")):
        with pytest.raises(ValueError, match="'auto' is not resolved"):
            render()


def test_make_judges_resolves_the_format_of_the_model_it_loads_and_takes_a_given_models(tiny_llama, monkeypatch, tmp_path):
    from emoneurons.backends import judges as judges_module
    from emoneurons.model import loading

    monkeypatch.setattr(loading, "load_model", lambda params: tiny_llama)
    specs = section("filter", judges=({"name": "a", "backend": "hf", "method": "score"},
                                      {"name": "b", "backend": "hf", "method": "score"})).judges
    loaded = judges_module.make_judges(specs, section("model"), tmp_path, "auto", classify=classify)
    assert [j.prompt_format for j in loaded] == ["chat", "chat"]  # resolved once, for the model loaded there
    given = judges_module.make_judges(specs, section("model"), tmp_path, "plain", classify=classify, lm=tiny_llama)
    assert [j.prompt_format for j in given] == ["plain", "plain"]
    with pytest.raises(ValueError, match="'auto' is not resolved"):  # a given model comes with its resolved format
        judges_module.make_judges(specs, section("model"), tmp_path, "auto", classify=classify, lm=tiny_llama)
