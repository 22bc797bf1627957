"""augment, generate and filter through the `openai` backend against a real OpenAI-compatible
server: llama.cpp's (the `llama-cpp-python[server]` package, installed by `make setup`) on
127.0.0.1, serving the packaged SmolLM2 GGUF. The server is killed (SIGKILL) halfway through
generate; the stage fails without writing its output, and once the server is back the rerun
finishes with no request answered twice and every dialogue answered before the crash kept.

The server's own access log is the witness for "no request sent twice": each answered request
is one `POST /v1/chat/completions ... 200` line there.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest
import yaml

from emoneurons.model.embedded import SMOLLM2_GGUF, smollm2_dir
from emoneurons.text.dialogue_format import check_reply
from helpers.repo_params import params_dict
from helpers.stage_runner import REPO

SEEDS = REPO / "data" / "seeds" / "topics.txt"
ANSWERED = '"POST /v1/chat/completions HTTP/1.1" 200'
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` on a fixed port; each start logs to its own file."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.logs: list[Path] = []
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        log = self.workdir / f"server-{len(self.logs)}.log"
        self.logs.append(log)
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_dir() / SMOLLM2_GGUF),
            "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", "2048", "--n_threads", "2",
        ]
        with open(log, "wb") as handle:
            # Unbuffered: uvicorn's access log goes to stdout, and a killed server flushes nothing.
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self.process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"llama.cpp server exited ({self.process.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"llama.cpp server not up after 120 s:\n{log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def answered(self) -> int:
        """Requests answered with 200, over every start."""
        return sum(log.read_text(errors="replace").count(ANSWERED) for log in self.logs)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as error:  # a missing install step, not a reason to skip
        raise AssertionError(f"llama-cpp-python[server] is not installed ({error}); `make setup` installs it") from None
    server = LlamaServer(tmp_path_factory.mktemp("llama"))
    server.start()
    yield server
    server.stop()


def openai_params(server: LlamaServer, **sampling) -> dict:
    # One retry, so a dead server ends the stage in seconds rather than after minutes of backoff.
    return {**params_dict()["augment"]["openai"], "base_url": server.base_url, "model": "smollm2", "api_key_env": "EMONEURONS_NO_KEY",
            "concurrency": 2, "max_retries": 1, "timeout_s": 120, **sampling}


def stage(name: str, workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(REPO / "stages" / f"{name}.py")], cwd=workdir, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out + err


def cache_entries(workdir: Path, name: str) -> dict[str, dict]:
    root = workdir / "data" / "cache" / "llm" / name
    return {path.stem: json.loads(path.read_text()) for path in root.glob("*/*.json")}


def kept_replies(entries: dict[str, dict]) -> list[str]:
    """The dialogues generate keeps from these cached replies: usable, and ended by themselves (a
    reply cut off at max_tokens is re-asked). A re-ask is made only after an unusable try, so each
    usable reply is the one its dialogue keeps."""
    kept = []
    for entry in entries.values():
        dialogue, _ = check_reply(entry["text"])
        if dialogue is not None and entry.get("finish_reason") != "length":
            kept.append(dialogue)
    return kept


def test_real_server_killed_halfway_through_generate_then_resumed(server, tmp_path):
    (tmp_path / "data" / "seeds").mkdir(parents=True)
    (tmp_path / "data" / "seeds" / "topics.txt").write_text(SEEDS.read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["augment"].update(backend="openai", n_seed=1, rounds=1, max_retries=1,
                             openai=openai_params(server, temperature=1.0, max_tokens=16))
    params["generate"].update(backend="openai", per_pair=2, max_retries=2,
                              openai=openai_params(server, temperature=1.0, max_tokens=192))  # room to finish: a cut-off reply is dropped
    params["filter"].update(min_agree=1, judges=[
        {"name": "smollm", "backend": "openai", "openai": openai_params(server, temperature=0.0, max_tokens=8)}
    ])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    # augment: 1 seed; the round asks the server for an alternative (kept, or dropped when unusable).
    code, log = finish(stage("augment", tmp_path))
    assert code == 0, log
    topics = pl.read_parquet(tmp_path / "data" / "topics.parquet")["topic"].to_list()
    assert 1 <= len(topics) <= 2, topics
    augment = json.loads((tmp_path / "reports" / "augment.json").read_text())
    assert augment["usage"]["fetched"] >= 1
    assert server.answered() == len(cache_entries(tmp_path, "augment"))

    # generate: topics x 6 emotions x 2; the server dies once a third of the first try is answered
    # and at least one reply is a dialogue to keep (SmolLM2 writes one about one time in six).
    planned = len(topics) * 6 * 2
    before = server.answered()
    running = stage("generate", tmp_path)
    deadline = time.monotonic() + 300
    while len(answered := cache_entries(tmp_path, "generate")) < planned // 3 or not kept_replies(answered):
        assert running.poll() is None, finish(running)[1]
        assert time.monotonic() < deadline, "generate answered too few requests in 300 s"
        time.sleep(0.1)
    server.kill()
    code, log = finish(running, timeout=120)
    assert code == 1, log
    assert "run the stage again to resume" in log
    assert not (tmp_path / "data" / "dialogues.parquet").exists()  # nothing DVC would take as done
    before_crash = cache_entries(tmp_path, "generate")
    kept_before_crash = kept_replies(before_crash)
    assert len(before_crash) >= planned // 3 and kept_before_crash  # it died midway (exit 1 above), with a dialogue answered
    assert server.answered() - before == len(before_crash)  # every answer the server gave was kept

    server.start()
    code, log = finish(stage("generate", tmp_path))
    assert code == 0, log
    report = json.loads((tmp_path / "reports" / "generate.json").read_text())
    entries = cache_entries(tmp_path, "generate")
    # No request answered twice: the server answered each cached request exactly once.
    assert server.answered() - before == len(entries)
    assert report["usage"]["cached"] == len(before_crash)
    assert report["usage"]["fetched"] == len(entries) - len(before_crash)
    # No dialogue lost: each planned one is in the output or dropped for what its replies said.
    assert report["planned"] == planned
    assert report["generated"] + report["dropped"] == planned
    assert "no answer" not in report["rejected"]
    dialogues = set(pl.read_parquet(tmp_path / "data" / "dialogues.parquet")["dialogue"].to_list())
    assert len(dialogues) == report["generated"]
    # Every dialogue answered before the crash is in the output (at least one, asserted above).
    assert [d for d in kept_before_crash if d not in dialogues] == []
    assert report["generated"] >= len(set(kept_before_crash))

    # SmolLM2-135M writes a clean A:/B: dialogue about one time in six: with three tries for each
    # of at least 12 dialogues, none at all would take a (5/6)^36 < 0.2% run.
    assert report["generated"] >= 1, report

    # filter: the server labels each kept dialogue with the paper's prompt.
    code, log = finish(stage("filter", tmp_path))
    assert code == 0, log
    labels = pl.read_parquet(tmp_path / "data" / "filtered.parquet")
    assert labels.height == report["generated"]  # min_agree 1: the intended emotion alone keeps it
    assert labels["judge_smollm"].null_count() < labels.height
    assert len(cache_entries(tmp_path, "filter")) >= report["generated"]

    # A rerun of the whole front of the pipeline pays for nothing: every request is cached.
    answered = server.answered()
    for name in ("augment", "generate"):
        code, log = finish(stage(name, tmp_path))
        assert code == 0, log
    assert server.answered() == answered
    assert json.loads((tmp_path / "reports" / "generate.json").read_text())["usage"]["fetched"] == 0
