"""Bad input not covered by the per-module tests: each fails in one line that names the problem
and the place (file, key, line), before any work, and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emoneurons.backends.chat import ChatBackendError, ChatRequest
from emoneurons.backends.judges import ChatJudge
from emoneurons.backends.openai_backend import OpenAIChatBackend
from emoneurons.dataset.emoprism import read_emoprism
from emoneurons.dataset.topics import read_seeds
from emoneurons.io.tables import DataError
from emoneurons.params import ParamsError, parse_params
from emoneurons.text.dialogue_format import MAX_REPLY_CHARS, check_reply
from emoneurons.text.paper_prompts.label import label_prompt
from helpers.fakes import FakeChat, FakeOpenAIServer
from helpers.repo_params import params_dict, params_yaml, section
from helpers.stage_runner import run_stage_script
from helpers.synthetic_inputs import sample_records


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"select": {"top_rate": 0}}, "params.yaml: select.top_rate: Input should be greater than 0 (got 0)"),
        ({"select": {"top_rate": 1.5}}, "params.yaml: select.top_rate: Input should be less than or equal to 0.5 (got 1.5)"),
        ({"select": {"topp_rate": 0.01}}, "params.yaml: select.topp_rate: unknown key"),
        ({"model": {"batch_size": "many"}}, "params.yaml: model.batch_size: Input should be a valid integer, unable to parse string as an integer (got 'many')"),
        ({"generate": {"emotions": "anger"}}, "params.yaml: generate.emotions: Input should be a valid tuple (got 'anger')"),
        ({"augment": {"openai": {"base_url": 7}}}, "params.yaml: augment.openai.base_url: Input should be a valid string (got 7)"),
        ({"model": {"id": "/nonexistent/models/llama"}}, "params.yaml: model.id: /nonexistent/models/llama: no such folder; allowed: embedded, embedded-gemma3, a hub id (owner/name) or an existing local folder"),
        ({"model": {"id": "./no-such-model"}}, "params.yaml: model.id: ./no-such-model: no such folder"),
    ],
)
def test_malformed_params_fail_in_one_line_naming_the_key(raw, expected):
    with pytest.raises(ParamsError) as info:
        parse_params(params_dict(raw))
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_a_hub_id_or_an_existing_folder_is_accepted(tmp_path):
    assert parse_params(params_dict({"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}})).model.id == "meta-llama/Llama-3.1-8B-Instruct"
    assert parse_params(params_dict({"model": {"id": str(tmp_path)}})).model.id == str(tmp_path)


def _seeds(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "topics.txt"
    path.write_bytes(data)
    return path


def test_seed_file_problems_name_the_file_and_line(tmp_path):
    with pytest.raises(DataError, match=r"topics\.txt: not UTF-8 text \(invalid start byte at byte 5\)"):
        read_seeds(_seeds(tmp_path, b"Dogs\n\xff\xfeCats\n"))
    with pytest.raises(DataError, match=r"topics\.txt: line 3: 10000 characters, a seed topic has at most 200"):
        read_seeds(_seeds(tmp_path, b"Dogs\n\n" + b"x" * 10_000 + b"\nCats\n"))
    # Blank lines, comments and surrounding spaces are skipped by rule; near-duplicates fold later.
    assert read_seeds(_seeds(tmp_path, b"\n  Dogs  \n\n# comment\ndogs\n")) == ["Dogs", "dogs"]


def test_seed_file_errors_stop_the_stage_before_any_output(tmp_path):
    (tmp_path / "params.yaml").write_text(params_yaml({"augment": {"n_seed": 1}}))
    (tmp_path / "data" / "seeds").mkdir(parents=True)
    (tmp_path / "data" / "seeds" / "topics.txt").write_bytes(b"Dogs\n" + b"y" * 10_000 + b"\n")
    result = run_stage_script("augment", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["data/seeds/topics.txt: line 2: 10000 characters, a seed topic has at most 200 (one topic of a few words a line)"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == ["data/seeds/topics.txt", "params.yaml"]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("A: " + "so angry " * 6_000 + "\nB: Calm down.", "too long"),  # ~54,000 characters
        ("A: Hi.\nA: Hello?\nA: Anyone?", "one speaker"),
        ("Hi there.\nHello.", "narration"),
        ("A: Hi.\nB: \nA: Bye.", "empty turn"),
    ],
)
def test_dialogues_that_are_not_two_speakers_taking_turns_are_rejected(reply, reason):
    assert check_reply(reply) == (None, reason)


def test_a_long_but_sane_dialogue_is_kept():
    reply = "\n".join(f"{'AB'[i % 2]}: I am still angry about it." for i in range(MAX_REPLY_CHARS // 40))
    assert len(reply) < MAX_REPLY_CHARS and check_reply(reply)[1] == "ok"


def test_empty_and_outside_the_six_judge_answers_are_reasked_then_no_label():
    chat = FakeChat(lambda request: "" if len(chat.requests) <= 2 else "joy")  # empty, then outside the six
    judge = ChatJudge("api", chat)
    assert judge.label(["A: Hi.\nB: Hello.", "A: Boo.\nB: Eek."]) == [None, None]
    assert judge.reasked == 2 and len(chat.requests) == 4
    assert [r.messages[0][1] for r in chat.requests[2:]] == [label_prompt(d, retry=True) for d in ["A: Hi.\nB: Hello.", "A: Boo.\nB: Eek."]]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda text: text[: len(text) // 2], r"e\.json: record 6 \(from line \d+\), key '\w+': not valid JSON: .* at line \d+, column \d+ \(truncated: the file ends inside it\)"),
        (lambda text: "\n".join(json.dumps(r) for r in json.loads(text)[:3]) + '\n{"topic": "x", "the', r"e\.json: record 3 \(line 4\), after key 'topic': not valid JSON in a JSON Lines file: .* \(truncated: the file ends inside it\)"),
        (lambda text: text.replace('"theme": "anger"', '"theme": anger', 1), r"e\.json: record 0 \(from line 2\), key 'theme': not valid JSON: Expecting value at line \d+, column \d+$"),
        (lambda text: json.dumps([{k: v for k, v in r.items() if k != "dialogue"} for r in json.loads(text)]), r"e\.json: no key 'dialogue' in the records"),
        (lambda text: text.replace('"theme": "fear"', '"theme": "fearful"', 1), r"e\.json: 'theme' must be one of anger, .*; not so in record 4 \(1 in all\)"),
    ],
)
def test_a_damaged_emoprism_file_fails_naming_the_place(tmp_path, damage, message):
    text = json.dumps(sample_records(), indent=1)
    (tmp_path / "e.json").write_text(damage(text))
    with pytest.raises(DataError, match=message) as info:
        read_emoprism(tmp_path / "e.json")
    assert "\n" not in str(info.value)


class OddServer(FakeOpenAIServer):
    """Answers every request with HTTP 200 and `body` as `content_type`."""

    body, content_type = b"", "application/json"

    async def _respond(self, request: dict) -> bytes:
        self.by_content[request["messages"][-1]["content"]] += 1
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {self.content_type}\r\nContent-Length: {len(self.body)}\r\n\r\n"
        return head.encode() + self.body


@pytest.mark.parametrize(
    ("body", "content_type", "described"),
    [
        (b"<html><head><title>Welcome to nginx!</title></head><body>...</body></html>", "text/html", "an HTML page ('Welcome to nginx!')"),
        (b"", "application/json", "an empty body"),
        (b'{"detail": "Not Found"}', "application/json", "a body that is not a chat completion ('{\"detail\": \"Not Found\"}')"),
    ],
)
def test_a_server_answering_html_or_nothing_stops_the_call_in_one_line(tmp_path, body, content_type, described):
    with OddServer() as server:
        server.body, server.content_type = body, content_type
        params = section("augment.openai", base_url=server.base_url, model="m", api_key_env="EMONEURONS_TEST_KEY", concurrency=2, max_retries=3, timeout_s=5.0)
        backend = OpenAIChatBackend(params, tmp_path / "cache", backoff_initial_s=0.01, progress=False)
        with pytest.raises(ChatBackendError) as info:
            backend.complete([ChatRequest(messages=(("user", f"q{i}"),)) for i in range(20)])
        assert server.requests < 5  # not retried, nothing more started
    assert str(info.value) == (
        f"openai: {server.base_url} (model 'm') answered HTTP 200 with {described} instead of a chat completion; "
        "check openai.base_url (an OpenAI-compatible endpoint, usually ending in /v1)"
    )
    assert not list((tmp_path / "cache").rglob("*.json"))
