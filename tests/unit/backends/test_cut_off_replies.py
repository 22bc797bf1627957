"""Replies that look whole but are not: an answer stopped by max_tokens (finish_reason "length")
is never taken as a dialogue or a label. It is cached (paid for), returned as None, counted as
truncated, re-asked by generate and the judges, then dropped. Against the in-process fake
OpenAI-compatible server of test_openai_backend.py; the hf judge's generate mode (an answer that
reached max_new_tokens with no EOS) against a tiny random model steered to one token."""

from __future__ import annotations

import json

from emoneurons.backends.chat import ChatRequest
from emoneurons.backends.judges import ChatJudge
from emoneurons.backends.openai_backend import OpenAIChatBackend
from emoneurons.dataset.dialogues import generate_request_text, llm_dialogues
from emoneurons.text.paper_prompts.label import label_prompt
from helpers.fakes import FakeOpenAIServer, http_response
from helpers.repo_params import section

WHOLE = "A: I can't believe you broke it again!\nB: I said I was sorry, calm down."
CUT = "A: I can't believe you broke it again!\nB: I said I was"  # what a max_tokens stop looks like


class CuttingServer(FakeOpenAIServer):
    """Answers `answers[content]` in turn (then the last one again); an answer given as
    ("cut", text) comes with finish_reason "length"."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[str, list] = {}

    async def _respond(self, body: dict) -> bytes | None:
        content = body["messages"][-1]["content"]
        self.by_content[content] += 1
        queue = self.answers.get(content, [WHOLE])
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        finish = "stop"
        if isinstance(answer, tuple):
            finish, answer = "length", answer[1]
        return http_response(200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17},
        })


def _backend(server: FakeOpenAIServer, cache_dir) -> OpenAIChatBackend:
    params = section("augment.openai", base_url=server.base_url, model="fake-model", api_key_env="EMONEURONS_TEST_KEY", concurrency=2, max_retries=1, timeout_s=5.0)
    return OpenAIChatBackend(params, cache_dir, backoff_initial_s=0.01, backoff_max_s=0.05, progress=False)


def test_a_cut_off_answer_is_none_counted_cached_and_not_paid_twice(tmp_path):
    with CuttingServer() as server:
        server.answers = {"q0": [("cut", CUT)], "q1": [WHOLE]}
        requests = [ChatRequest(messages=(("user", f"q{i}"),)) for i in range(2)]
        backend = _backend(server, tmp_path)
        assert backend.complete(requests) == [None, WHOLE]
        assert (backend.usage.truncated, backend.usage.failed, backend.usage.as_metrics()["fetched"]) == (1, 0, 2)
        entries = [json.loads(p.read_text()) for p in tmp_path.rglob("*.json")]
        assert sorted(e["finish_reason"] for e in entries) == ["length", "stop"]
        rerun = _backend(server, tmp_path)
        assert rerun.complete(requests) == [None, WHOLE]
        assert (rerun.usage.cached, rerun.usage.truncated, server.requests) == (2, 1, 2)


def test_generate_reasks_a_cut_off_dialogue_then_drops_and_counts_it(tmp_path):
    topics, emotions = ["cats", "dogs"], ["anger"]
    with CuttingServer() as server:
        server.answers = {
            generate_request_text("cats", "anger"): [("cut", CUT), WHOLE],  # cut once, whole when re-asked
            generate_request_text("dogs", "anger"): [("cut", CUT)],  # cut every time
        }
        backend = _backend(server, tmp_path)
        table, stats = llm_dialogues(topics, emotions, 1, backend, max_retries=2)
    assert table["topic"].to_list() == ["cats"] and table["dialogue"].to_list() == [WHOLE]
    assert CUT not in table["dialogue"].to_list()
    assert (stats.generated, stats.reasked, stats.dropped, stats.asked) == (1, 3, 1, 5)
    assert stats.rejected == {"cut off at the token limit": 4}
    assert backend.usage.truncated == 4


def test_a_cut_off_label_is_asked_again_with_the_retry_prompt_then_none(tmp_path):
    dialogues = ["A: I hate this.\nB: Me too.", "A: Boo!\nB: You scared me."]
    with CuttingServer() as server:
        server.answers = {
            label_prompt(dialogues[0]): [("cut", "anger is not quite")],  # would parse as anger
            label_prompt(dialogues[0], retry=True): [("cut", "anger and")],
            label_prompt(dialogues[1]): [("cut", "surprise, or")],
            label_prompt(dialogues[1], retry=True): ["fear"],
        }
        judge = ChatJudge("api", _backend(server, tmp_path))
        assert judge.label(dialogues) == [None, "fear"]
    assert judge.reasked == 2 and judge.backend.usage.truncated == 3


def test_an_hf_judge_never_takes_a_label_from_an_answer_cut_off_at_max_new_tokens(tiny_llama):
    from emoneurons.backends.judges import HFJudge
    from emoneurons.emotions import parse_emotion
    from emoneurons.evaluate.classify import classify
    from emoneurons.text.chat_prompt import label_ids
    from helpers.tiny_models import biased_copy

    dialogues = ["A: I hate this.\nB: Me too.", "A: Boo!\nB: You scared me."]
    (anger,) = label_ids(tiny_llama.tokenizer, "space")[0]
    # Says " anger anger anger ..." and never EOS: parses as anger, but it was stopped, not finished.
    steered = biased_copy(tiny_llama, anger)
    assert parse_emotion(tiny_llama.tokenizer.decode([anger] * 8)) == "anger"
    judge = HFJudge("hf", steered, "generate", batch_size=2, classify=classify, prompt_format="chat")
    assert judge.label(dialogues) == [None, None]
    assert (judge.reasked, judge.cut_off) == (2, 4)  # asked again with the retry prompt, then dropped
    # Says EOS at once: not cut off, an empty answer (no emotion) asked again, no cut-off counted.
    silent = HFJudge("hf", biased_copy(tiny_llama, tiny_llama.tokenizer.eos_token_id), "generate", batch_size=2, classify=classify, prompt_format="chat")
    assert silent.label(dialogues) == [None, None] and (silent.reasked, silent.cut_off) == (2, 0)
