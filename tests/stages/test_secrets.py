"""Secrets: an API key planted in the environment reaches the server and nothing else. The openai
stages (augment, generate, filter with an openai judge) run as the user runs them, against an
in-process OpenAI-compatible server on 127.0.0.1; every file they wrote and everything they
printed is searched for the key, also when the server rejects the key and echoes it back."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from repo_params import params_dict, params_yaml
from test_openai_backend import FakeOpenAIServer, _http

from emoneurons.backends.chat import ChatBackendError, ChatRequest
from emoneurons.backends.openai_backend import OpenAIChatBackend
from emoneurons.emotions import EMOTIONS
from emoneurons.params import load_params

from stage_runner import run_stage_script
KEY = "sk-planted-7f3a9c1e5b2d4086-SECRET"


class PromptServer(FakeOpenAIServer):
    """Answers the paper's three prompts plausibly: a new topic, a dialogue, the dialogue's emotion.
    With `reject`, every request gets a 401 whose message echoes the key it was sent."""

    reject = False

    async def _respond(self, body: dict) -> bytes:
        content = body["messages"][-1]["content"]
        self.by_content[content] += 1
        if self.reject:
            sent = self.last_authorization.removeprefix("Bearer ")
            return _http(401, {"error": {"message": f"Incorrect API key provided: {sent}.", "code": "invalid_api_key"}})
        if content.startswith("Please generate a one- or two-word alternative"):
            topic = re.search(r'term "([^"]+)"', content).group(1)
            answer = f"{topic} club"
        elif content.startswith("As a creative writer"):
            topic, emotion = re.search(r'topic "([^"]+)"\. The conversation should vividly convey the emotion of "(\w+)"', content).groups()
            answer = f"A: Let us talk about {topic}.\nB: It fills me with {emotion}, honestly."
        else:
            answer = next((e for e in EMOTIONS if f"with {e}," in content), "anger")
        return _http(200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59},
        })

    async def _serve(self, reader, writer):  # remembers the Authorization header of the request it answers
        original = reader.readline

        async def readline():
            line = await original()
            if line.lower().startswith(b"authorization:"):
                self.last_authorization = line.decode().partition(":")[2].strip()
            return line

        reader.readline = readline
        return await super()._serve(reader, writer)


def _params(base_url: str) -> str:
    endpoint = {"base_url": base_url, "model": "fake-model", "api_key_env": "EMONEURONS_PLANTED_KEY", "max_retries": 1, "timeout_s": 10}
    return params_yaml({
        "augment": {"backend": "openai", "n_seed": 2, "rounds": 1, "openai": endpoint},
        "generate": {"backend": "openai", "per_pair": 1, "openai": endpoint},
        "filter": {"min_agree": 2, "judges": [{"name": "api", "backend": "openai", "openai": params_dict()["augment"]["openai"] | endpoint}]},
    })


def _run(project: Path, stage: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "EMONEURONS_PLANTED_KEY": KEY}
    return run_stage_script(stage, cwd=project, env=env)


def _files_holding(root: Path, secret: str) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.slow
def test_the_key_reaches_the_server_and_no_file_or_output(tmp_path):
    (tmp_path / "data" / "seeds").mkdir(parents=True)
    (tmp_path / "data" / "seeds" / "topics.txt").write_text("Dogs\nsushi\n")
    printed = []
    with PromptServer() as server:
        (tmp_path / "params.yaml").write_text(_params(server.base_url))
        for stage in ("augment", "generate", "filter"):
            result = _run(tmp_path, stage)
            printed += [result.stdout, result.stderr]
            assert result.returncode == 0, f"{stage}: {result.stderr}"
        assert server.authorizations == {f"Bearer {KEY}"}  # the key was really used
        assert server.requests == 2 + 4 * 6 + 4 * 6
        # A rejected key: the server echoes it in its 401; the one-line error (what the stage
        # prints) must not repeat it.
        server.reject = True
        os.environ["EMONEURONS_PLANTED_KEY"] = KEY
        try:
            backend = OpenAIChatBackend(load_params(tmp_path / "params.yaml").generate.openai, tmp_path / "rejected", progress=False)
            with pytest.raises(ChatBackendError) as rejected:
                backend.complete([ChatRequest(messages=(("user", "q"),))])
        finally:
            del os.environ["EMONEURONS_PLANTED_KEY"]
    assert "HTTP 401: Incorrect API key provided: ***." in str(rejected.value) and "EMONEURONS_PLANTED_KEY" in str(rejected.value)
    printed.append(str(rejected.value))
    report = json.loads((tmp_path / "reports" / "filter.json").read_text())
    assert report["kept"] == 24 and report["judge_usage"]["api"]["requests"] == 24
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert len(written) > 50  # the run wrote its outputs, metrics and one cache entry per request
    assert _files_holding(tmp_path, "fake-model")  # the search does find what the files hold
    assert _files_holding(tmp_path, KEY) == []
    assert _files_holding(tmp_path, KEY[3:20]) == []  # no fragment either
    assert not any(KEY in text or KEY[3:20] in text for text in printed)
