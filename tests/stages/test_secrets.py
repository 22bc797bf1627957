"""Secrets: an API key planted in the environment reaches the server and nothing else. The openai
stages (augment, generate, filter with an openai judge) run as the user runs them, against an
in-process OpenAI-compatible server on 127.0.0.1; every file they wrote and everything they
printed is searched for the key, also when the server rejects the key and echoes it back."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from emoneurons.backends.chat import ChatBackendError, ChatRequest
from emoneurons.backends.openai_backend import OpenAIChatBackend
from emoneurons.params import load_params
from helpers.fakes import PromptServer
from helpers.repo_params import params_dict, params_yaml
from helpers.stage_runner import run_stage_script

KEY = "sk-planted-7f3a9c1e5b2d4086-SECRET"


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
