"""The openai backend against an in-process fake OpenAI-compatible server on 127.0.0.1 that can
answer with 429 + Retry-After, 500, a slow response, a dropped connection, 401 or 404."""

from __future__ import annotations

import json
import time

import pytest

from emoneurons.backends.chat import ChatBackendError, ChatRequest
from emoneurons.backends.factory import make_chat_backend
from emoneurons.backends.openai_backend import OpenAIChatBackend, retry_after_seconds
from helpers.fakes import FakeOpenAIServer
from helpers.repo_params import section


@pytest.fixture
def server():
    with FakeOpenAIServer() as fake:
        yield fake


def _backend(server, cache_dir, **changes) -> OpenAIChatBackend:
    params = section("augment.openai", **{"base_url": server.base_url, "model": "fake-model", "api_key_env": "EMONEURONS_TEST_KEY", "concurrency": 4, "timeout_s": 5.0, "max_retries": 4, **changes})
    return OpenAIChatBackend(params, cache_dir, backoff_initial_s=0.01, backoff_max_s=0.05, progress=False)


def _requests(n: int, prefix: str = "q", sample: int = 0) -> list[ChatRequest]:
    return [ChatRequest(messages=(("system", "sys"), ("user", f"{prefix}{i}")), sample=sample) for i in range(n)]


def _reply(content: str, temperature: float = 1.0) -> str:
    return f"reply to {content} t={temperature}"


def test_answers_in_request_order_with_usage_and_cost(server, tmp_path):
    backend = _backend(server, tmp_path, price_per_1k_input=2.0, price_per_1k_output=10.0)
    requests = _requests(30)
    answers = backend.complete(requests, desc="test")
    assert answers == [_reply(f"q{i}") for i in range(30)]
    prompt_tokens = sum(len(f"q{i}") for i in range(30))
    usage = backend.usage
    assert (usage.requests, usage.cached, usage.failed, usage.retried) == (30, 0, 0, 0)
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt_tokens, 90)
    assert usage.cost_usd == pytest.approx(prompt_tokens / 1000 * 2.0 + 90 / 1000 * 10.0)
    assert server.requests == 30
    assert usage.as_metrics()["fetched"] == 30


def test_cache_hits_make_no_request_and_sample_index_is_part_of_the_key(server, tmp_path):
    requests = _requests(12)
    first = _backend(server, tmp_path).complete(requests)
    assert server.requests == 12
    again = _backend(server, tmp_path)
    assert again.complete(requests) == first
    assert server.requests == 12  # nothing asked twice
    assert (again.usage.cached, again.usage.prompt_tokens, again.usage.completion_tokens) == (12, sum(len(f"q{i}") for i in range(12)), 36)
    again.complete(_requests(12, sample=1))
    assert server.requests == 24
    _backend(server, tmp_path, temperature=0.0).complete(requests[:3])  # other sampling params: other entries
    assert server.requests == 27


def test_rate_limit_is_retried_after_the_servers_retry_after(server, tmp_path):
    server.script["q0"] = ["429:1"]
    backend = _backend(server, tmp_path)
    start = time.monotonic()
    answers = backend.complete(_requests(1))
    elapsed = time.monotonic() - start
    assert answers == [_reply("q0")]
    assert 1.0 <= elapsed < 3.0  # waited what the server asked, not the 10 ms backoff
    assert (backend.usage.retried, backend.usage.failed, server.requests) == (1, 0, 2)


def test_server_errors_timeouts_and_dropped_connections_are_retried(tmp_path):
    with FakeOpenAIServer(slow_s=3.0) as server:
        server.script.update({"q0": ["500", "500"], "q1": ["slow"], "q2": ["drop"], "q3": ["drop", "500", "slow"]})
        backend = _backend(server, tmp_path, timeout_s=0.3)
        answers = backend.complete(_requests(6))
        assert answers == [_reply(f"q{i}") for i in range(6)]
        assert backend.usage.retried == 7 and backend.usage.failed == 0
        assert [server.by_content[f"q{i}"] for i in range(6)] == [3, 2, 2, 4, 1, 1]


def test_exhausted_retries_fail_the_call_and_a_rerun_resumes(server, tmp_path):
    server.script["q1"] = ["500"] * 3
    backend = _backend(server, tmp_path, max_retries=2, concurrency=1)
    with pytest.raises(ChatBackendError, match=r"no answer after 2 retries \(last error: HTTP 500: The server had an error.*run the stage again to resume"):
        backend.complete(_requests(20))
    assert (backend.usage.failed, backend.usage.retried, server.by_content["q1"]) == (1, 2, 3)
    assert server.requests == 4  # q0, q1 three times; nothing new was started after q1 gave up
    rerun = _backend(server, tmp_path, max_retries=2, concurrency=1)
    assert rerun.complete(_requests(20)) == [_reply(f"q{i}") for i in range(20)]
    assert rerun.usage.cached == 1 and server.by_content["q0"] == 1 and server.by_content["q1"] == 4


@pytest.mark.parametrize(("status", "message"), [("401", "Incorrect API key provided"), ("404", "The model `fake-model` does not exist")])
def test_hard_error_stops_at_once_with_the_servers_message(server, tmp_path, status, message):
    server.script["q0"] = [status]
    backend = _backend(server, tmp_path, concurrency=2)
    with pytest.raises(ChatBackendError, match=f"HTTP {status}: {message}"):
        backend.complete(_requests(200))
    assert server.by_content["q0"] == 1  # not retried
    assert server.requests < 20  # the other workers stopped too
    assert backend.usage.retried == 0


def test_crash_halfway_keeps_what_was_done(server, tmp_path):
    server.script["q10"] = ["401"]
    with pytest.raises(ChatBackendError):
        _backend(server, tmp_path, concurrency=1).complete(_requests(20))
    assert server.requests == 11
    rerun = _backend(server, tmp_path, concurrency=1)
    assert rerun.complete(_requests(20)) == [_reply(f"q{i}") for i in range(20)]
    assert rerun.usage.cached == 10 and server.requests == 21  # only the 10 not done before


def test_corrupt_cache_entries_are_refetched(server, tmp_path):
    requests = _requests(5)
    backend = _backend(server, tmp_path)
    backend.complete(requests)
    paths = [backend.cache.path(backend_key(backend, r)) for r in requests]
    paths[0].write_text("{not json")
    paths[1].write_text(paths[1].read_text().replace("reply to", "edited"))  # text edited: still valid, kept
    entry = json.loads(paths[2].read_text())
    entry["request"]["sample"] = 3
    paths[2].write_text(json.dumps(entry))
    entry = json.loads(paths[3].read_text())
    del entry["text"]
    paths[3].write_text(json.dumps(entry))
    rerun = _backend(server, tmp_path)
    answers = rerun.complete(requests)
    assert answers == [_reply("q0"), "edited q1 t=1.0", _reply("q2"), _reply("q3"), _reply("q4")]
    assert (rerun.usage.cached, rerun.cache.corrupt_removed, server.requests) == (2, 3, 8)
    assert all(json.loads(p.read_text())["text"] for p in paths)


def backend_key(backend: OpenAIChatBackend, request: ChatRequest) -> str:
    from emoneurons.backends.cache import cache_key

    return cache_key(backend.request_fields(request))


def test_concurrency_cap_is_respected_and_used(tmp_path):
    with FakeOpenAIServer(latency_s=0.05) as server:
        backend = _backend(server, tmp_path, concurrency=3)
        backend.complete(_requests(24))
        assert server.max_in_flight == 3


def test_requests_per_minute_spaces_requests(server, tmp_path):
    backend = _backend(server, tmp_path, concurrency=8, requests_per_minute=600)
    start = time.monotonic()
    backend.complete(_requests(6))
    assert time.monotonic() - start >= 0.5  # 6 starts 0.1 s apart


def test_key_comes_from_the_named_variable_and_is_never_stored(server, tmp_path, monkeypatch):
    monkeypatch.setenv("EMONEURONS_TEST_KEY", "sk-secret-123")
    backend = _backend(server, tmp_path)
    backend.complete(_requests(2))
    assert server.authorizations == {"Bearer sk-secret-123"}
    assert "sk-secret-123" not in repr(backend)
    assert not any("sk-secret-123" in p.read_text() for p in tmp_path.rglob("*.json"))


def test_missing_key_fails_before_any_request_unless_local(tmp_path, monkeypatch):
    monkeypatch.delenv("EMONEURONS_TEST_KEY", raising=False)
    remote = section("augment.openai", base_url="https://api.example.invalid/v1", api_key_env="EMONEURONS_TEST_KEY")
    with pytest.raises(ChatBackendError, match="environment variable EMONEURONS_TEST_KEY is not set"):
        make_chat_backend("openai", openai=remote, cache_dir=tmp_path)
    local = section("augment.openai", base_url="http://localhost:8000/v1", api_key_env="EMONEURONS_TEST_KEY")
    assert make_chat_backend("openai", openai=local, cache_dir=tmp_path).name == "openai"


def test_retry_after_forms():
    import httpx2

    def error(headers):
        class Fake:
            response = httpx2.Response(429, headers=headers)

        return Fake()

    assert retry_after_seconds(error({"retry-after": "2"})) == 2.0
    assert retry_after_seconds(error({"retry-after": "0.25"})) == 0.25
    assert retry_after_seconds(error({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert retry_after_seconds(error({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0  # in the past
    assert retry_after_seconds(error({"retry-after": "soon"})) is None
    assert retry_after_seconds(error({})) is None
