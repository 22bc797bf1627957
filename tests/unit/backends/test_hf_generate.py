"""The hf chat backend on the tiny random Llama: left-padded batches match one-by-one generation,
sampling is seeded per request, answers are cached."""

from __future__ import annotations

import copy

import pytest
import torch

from emoneurons.backends.cache import cache_key
from emoneurons.backends.chat import ChatRequest
from emoneurons.backends.hf_generate import HFChatBackend, SeededSampler, top_p_filter
from emoneurons.model.loading import LoadedModel
from emoneurons.text.prompt_format import prompt_text
from helpers.repo_params import section

# Of very different lengths, so a batch needs real padding.
PROMPTS = [
    "anger",
    "A: I can't believe this happened! B: Oh no, that is terrible. A: What a wonderful day. B: I miss her so much.",
    "That smell is revolting.",
    "Given the following dialogue, predict the emotion that is most clearly conveyed.",
    "fear sadness",
]


@pytest.fixture(scope="module")
def chat_model(tiny_llama) -> LoadedModel:
    """tiny_llama with its own random output head: with the embeddings tied, a random model just
    repeats the prompt's last token (a newline after the chat template) whatever the prompt says."""
    model = copy.deepcopy(tiny_llama.model)
    generator = torch.Generator().manual_seed(1)
    model.lm_head.weight = torch.nn.Parameter(torch.randn(model.lm_head.weight.shape, generator=generator), requires_grad=False)
    return LoadedModel(model=model, tokenizer=tiny_llama.tokenizer, name="tiny-random-llama-untied")


def _requests(sample: int = 0) -> list[ChatRequest]:
    return [ChatRequest(messages=(("system", "You are a helpful assistant"), ("user", p)), sample=sample) for p in PROMPTS]


def _backend(loaded: LoadedModel, tmp_path, batch_size: int, **params) -> HFChatBackend:
    generation = section("generate.hf", **{"temperature": 0.0, "max_new_tokens": 6, **params})
    return HFChatBackend(loaded, generation, tmp_path, seed=0, batch_size=batch_size, prompt_format="chat", progress=False)


def _texts(backend: HFChatBackend, requests: list[ChatRequest]) -> list[str]:
    """What the model generated, cut off or not: the random models here rarely reach an
    end-of-turn token within a few tokens, so complete() returns None for those (cut off)."""
    answers = backend.complete(requests)
    texts = [backend.cache.get(cache_key(backend.request_fields(r))).text for r in requests]
    assert all(a is None or a == t for a, t in zip(answers, texts))
    return texts


def test_left_padded_batch_equals_unbatched_greedy(chat_model, tmp_path):
    padding_side = chat_model.tokenizer.padding_side
    batched = _texts(_backend(chat_model, tmp_path / "a", batch_size=len(PROMPTS)), _requests())
    single = _texts(_backend(chat_model, tmp_path / "b", batch_size=1), _requests())
    assert batched == single
    assert len(set(batched)) > 1  # the prompts really reach the model
    assert chat_model.tokenizer.padding_side == padding_side  # the shared tokenizer is left as found


def test_greedy_answer_is_the_models_argmax_continuation(chat_model, tmp_path):
    backend = _backend(chat_model, tmp_path, batch_size=4, max_new_tokens=4)
    [answer] = _texts(backend, _requests()[1:2])
    tokenizer, model = chat_model.tokenizer, chat_model.model
    ids = tokenizer(prompt_text(tokenizer, _requests()[1].messages, "chat"), return_tensors="pt", add_special_tokens=False)["input_ids"]
    for _ in range(4):  # plain argmax loop, no cache, no padding
        next_id = model(ids).logits[0, -1].argmax()
        ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    expected = tokenizer.decode(ids[0, -4:], skip_special_tokens=True).strip()
    assert answer == expected
    assert backend.usage.completion_tokens == 4


def test_sampling_is_seeded_per_request_not_per_batch(chat_model, tmp_path):
    params = {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": 8}
    together = _texts(_backend(chat_model, tmp_path / "a", batch_size=5, **params), _requests())
    alone = _texts(_backend(chat_model, tmp_path / "b", batch_size=1, **params), _requests())
    assert together == alone
    other_sample = _texts(_backend(chat_model, tmp_path / "c", batch_size=5, **params), _requests(sample=1))
    assert other_sample != together
    greedy = _texts(_backend(chat_model, tmp_path / "d", batch_size=5), _requests())
    assert greedy != together


def test_answers_are_cached_and_reused(tiny_llama, tmp_path):
    first = _backend(tiny_llama, tmp_path, batch_size=2)
    answers = _texts(first, _requests())
    assert (first.usage.requests, first.usage.cached) == (5, 0)
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0
    assert len(list(tmp_path.rglob("*.json"))) == 5
    second = _backend(tiny_llama, tmp_path, batch_size=2)
    calls = []
    second.generate = lambda prompts, seeds: calls.append(prompts)  # any generation would fail
    assert _texts(second, _requests()) == answers
    assert calls == [] and second.usage.cached == 5
    assert second.usage.as_metrics()["cost_usd"] is None
    entry = second.cache.get(cache_key(first.request_fields(_requests()[0])))
    assert entry.text == answers[0] and first.request_fields(_requests()[0])["backend"] == "hf"
    assert first.request_fields(_requests()[0])["model"] == "tiny-random-llama"


def test_top_p_keeps_smallest_set_reaching_the_mass():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert torch.allclose(top_p_filter(probs, 0.7), torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    assert torch.allclose(top_p_filter(probs, 0.4), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert torch.equal(top_p_filter(probs, 1.0), probs)


def test_seeded_sampler_draws_per_row_generator():
    scores = torch.zeros(2, 50)  # uniform: every draw depends on the generator alone
    first = SeededSampler(1.0, 1.0, [7, 7])(torch.zeros(2, 1, dtype=torch.long), scores)
    drawn = first.argmax(dim=-1)
    assert drawn[0] == drawn[1]  # same seed, same draw, whatever the row
    assert torch.isinf(first).sum() == 2 * 49
    again = SeededSampler(1.0, 1.0, [8, 7])(torch.zeros(2, 1, dtype=torch.long), scores).argmax(dim=-1)
    assert again[1] == drawn[1]


def test_an_answer_that_runs_out_of_new_tokens_is_cut_off_not_accepted(chat_model, tmp_path):
    """No end-of-turn token within max_new_tokens: None (counted truncated), also from the cache;
    an answer that does end with one is accepted."""
    requests = _requests()[:2]
    cut = _backend(chat_model, tmp_path / "cut", batch_size=2, max_new_tokens=3)
    texts = [text for text, _, _, _ in cut.generate([prompt_text(chat_model.tokenizer, r.messages, "chat") for r in requests], [0, 0])]
    cut._eos_ids = [chat_model.tokenizer.pad_token_id]  # an id the greedy answers below never reach
    assert cut.complete(requests) == [None, None] and cut.last_cut_off == {0, 1}
    assert (cut.usage.truncated, cut.usage.completion_tokens) == (2, 6)
    again = _backend(chat_model, tmp_path / "cut", batch_size=2, max_new_tokens=3)
    again.generate = lambda prompts, seeds: pytest.fail("a cut-off answer was asked again")
    assert again.complete(requests) == [None, None] and again.last_cut_off == {0, 1}
    assert (again.usage.cached, again.usage.truncated) == (2, 2)
    # The first generated token of the first answer made an end-of-turn token: that answer ends there.
    first_token = chat_model.tokenizer(texts[0], add_special_tokens=False)["input_ids"][0]
    ending = _backend(chat_model, tmp_path / "ends", batch_size=2, max_new_tokens=3)
    ending._eos_ids = [first_token]
    answers = ending.complete(requests[:1])
    assert answers[0] is not None and ending.usage.truncated == 0
