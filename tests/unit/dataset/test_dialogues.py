"""generate: template dialogues (form, length, topic, no label words, seeded, varied), stable ids,
reply repair/rejection, and the LLM procedure (re-asks with new sample indices, drops)."""

from __future__ import annotations

import json
import re
from collections import Counter

import polars as pl
import pytest

from emoneurons.backends.chat import ChatRequest
from emoneurons.backends.template_dialogues import FORBIDDEN_WORDS, MIXED_SHARE, template_dialogue
from emoneurons.dataset.dialogues import dialogue_plan, llm_dialogues, template_dialogues
from emoneurons.emotions import EMOTIONS
from emoneurons.text.dialogue_format import check_reply, dialogue_id, parse_dialogue
from emoneurons.text.paper_prompts.generate import GENERATE_PROMPT
from helpers.fakes import FakeChat
from helpers.repo_params import params_yaml
from helpers.stage_runner import run_stage_script

TOPICS = ["Dogs", "U.S. Senate", "potty training", "The Outlander Series", "Paris, France", "sushi", "I would like to discuss about financial independency"]
TURN = re.compile(r"^(A|B): \S")


def _all_template(seed: int = 0, per_pair: int = 4) -> list[tuple[str, str, int, str, str | None]]:
    return [(t, e, k, *template_dialogue(t, e, k, seed, 12)) for t, e, k in dialogue_plan(TOPICS, EMOTIONS, per_pair)]


def test_template_dialogues_have_the_form_length_and_topic():
    for topic, _emotion, _k, text, _ in _all_template():
        lines = text.split("\n")
        assert 4 <= len(lines) <= 12, text
        assert all(TURN.match(line) for line in lines), text
        assert [line[0] for line in lines] == ["AB"[i % 2] for i in range(len(lines))]
        assert sum(topic in line for line in lines) >= 2, text
        assert text == text.strip() and "  " not in text


def test_max_turns_bounds_template_dialogues_and_keeps_their_form():
    lengths = []
    for topic, emotion, k in dialogue_plan(TOPICS, EMOTIONS, 4):
        text, _ = template_dialogue(topic, emotion, k, 0, max_turns=6)
        lines = text.split("\n")
        lengths.append(len(lines))
        assert all(TURN.match(line) for line in lines), text
        assert sum(topic in line for line in lines) >= 2, text
    assert min(lengths) >= 4 and max(lengths) == 6


def test_template_dialogues_never_name_an_emotion():
    for *_, text, _ in _all_template():
        words = set(re.findall(r"[a-z]+", text.lower()))
        assert not words & FORBIDDEN_WORDS, text
        assert not words & set(EMOTIONS)


def test_template_dialogues_are_seeded_and_varied():
    same, other = _all_template(0), _all_template(1)
    assert same == _all_template(0)
    changed = sum(a[3] != b[3] for a, b in zip(same, other))
    assert changed > 0.9 * len(same)
    texts = [row[3] for row in same]
    assert len(set(texts)) == len(texts)
    # Several shapes: the openers vary, and so do the lengths.
    assert len({t.split("\n")[0].replace(row[0], "{topic}") for t, row in zip(texts, same)}) >= 10
    assert len({t.count("\n") + 1 for t in texts}) >= 6
    # The k-th dialogues of a pair differ from each other.
    assert template_dialogue("Dogs", "fear", 0, 0, 12) != template_dialogue("Dogs", "fear", 1, 0, 12)


def test_a_small_seeded_share_mixes_in_a_second_emotion():
    rows = _all_template(per_pair=10)
    mixed = [row for row in rows if row[4] is not None]
    share = len(mixed) / len(rows)
    assert 0.4 * MIXED_SHARE < share < 2 * MIXED_SHARE
    assert all(row[4] != row[1] and row[4] in EMOTIONS for row in mixed)


def test_template_table_has_the_contract_columns_and_stable_ids():
    df, stats = template_dialogues(TOPICS[:3], ["fear", "anger"], per_pair=2, seed=0, max_turns=12)
    assert df.columns == ["id", "topic", "theme", "dialogue", "backend", "model"]
    assert df.height == stats.planned == stats.generated == 12
    assert df["theme"].to_list()[:4] == ["anger", "anger", "fear", "fear"]  # the paper's order
    assert set(df["backend"]) == set(df["model"]) == {"template"}
    assert df["id"].n_unique() == 12
    assert df["id"][0] == dialogue_id("template", "template", "Dogs", "anger", 0)
    again, _ = template_dialogues(TOPICS[:3], ["fear", "anger"], per_pair=2, seed=0, max_turns=12)
    assert again.equals(df)


def test_dialogue_id_is_stable_and_depends_on_every_part():
    base = dialogue_id("openai", "gpt-4o-mini", "Dogs", "fear", 0)
    assert base == dialogue_id("openai", "gpt-4o-mini", "Dogs", "fear", 0)
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    variants = [
        dialogue_id("hf", "gpt-4o-mini", "Dogs", "fear", 0),
        dialogue_id("openai", "other", "Dogs", "fear", 0),
        dialogue_id("openai", "gpt-4o-mini", "Cats", "fear", 0),
        dialogue_id("openai", "gpt-4o-mini", "Dogs", "anger", 0),
        dialogue_id("openai", "gpt-4o-mini", "Dogs", "fear", 1),
    ]
    assert len(set(variants + [base])) == 6


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("A: Hi there.\nB: Hello!", "A: Hi there.\nB: Hello!"),
        ("  A: Hi there.  \n\n\nB:   Hello!\n", "A: Hi there.\nB: Hello!"),
        ("1. A: Hi.\n2. B: Hello.", "A: Hi.\nB: Hello."),
        ("**A:** Hi.\n**B:** Hello.", "A: Hi.\nB: Hello."),
        ("**A**: Hi.\n**B**: Hello.", "A: Hi.\nB: Hello."),
        ("- A: Hi.\n- B: Hello.", "A: Hi.\nB: Hello."),
        ("```\nA: Hi.\nB: Hello.\n```", "A: Hi.\nB: Hello."),
        ("A: Hi. B: Hello. A: Bye.", "A: Hi.\nB: Hello.\nA: Bye."),
        ("Sarah: Hi.\nTom: Hello.\nSarah: Bye.", "A: Hi.\nB: Hello.\nA: Bye."),
        ("Person A: Time: noon.\nPerson B: Fine.", "A: Time: noon.\nB: Fine."),
        ("A: One.\nA: Two.\nB: Three.", "A: One.\nA: Two.\nB: Three."),
    ],
)
def test_parse_dialogue_repairs_trivial_problems(reply, expected):
    assert parse_dialogue(reply) == expected


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty"),
        ("  \n \n", "empty"),
        ("Here is the dialogue:\nA: Hi.\nB: Hello.", "narration"),
        ("A: Hi.\nThey both laugh nervously.\nB: Hello.", "narration"),
        ("A: Hi.\n(She slams the door.)\nB: Hello.", "narration"),
        ("Emotion: anger\nA: Hi.\nB: Hello.", "label"),
        ("A: Hi.\nB: Hello.\nTopic: Dogs", "label"),
        ("A: Hi.\nA: Hello?", "one speaker"),
        ("A: Hi.\nB: Hello.\nC: Hey.", "more than two speakers"),
        ("Sarah: Hi.\nSarah: Again.\nTom: Hello.", "named speakers do not alternate"),
        ("A: Hi.\nB:", "empty turn"),
    ],
)
def test_parse_dialogue_rejects(reply, reason):
    assert parse_dialogue(reply) is None
    assert check_reply(reply) == (None, reason)


def test_llm_dialogues_reask_bad_replies_with_new_samples_then_drop():
    def reply(request: ChatRequest) -> str | None:
        prompt = request.messages[0][1]
        if '"Cats"' in prompt:  # Cats: always narration -> dropped after the retries
            return "Once upon a time, two friends talked."
        if request.sample == 0:  # first tries fail: one None, one single speaker
            return None if '"fear"' in prompt else "A: Only me talking."
        return f"1. A: About sample {request.sample}.\n2. B: Indeed."

    backend = FakeChat(reply)
    df, stats = llm_dialogues(["Dogs", "Cats"], ["fear", "anger"], per_pair=2, backend=backend, max_retries=2)
    assert stats.planned == 8
    assert df.height == stats.generated == 4  # all of Dogs, two of them on the second try
    assert stats.dropped == 4 and stats.repaired == 4 and stats.reasked == 2 + 4 + 4
    # Dogs' k=0 dialogues fail on sample 0 and are re-asked as sample 0 + 1 * per_pair = 2.
    asked = Counter((r.messages[0][1].split('"')[1], r.sample) for r in backend.requests)
    assert asked[("Dogs", 0)] == 2 and asked[("Dogs", 2)] == 2 and asked[("Dogs", 1)] == 2
    assert asked[("Cats", 4)] == 2 and asked[("Cats", 5)] == 2  # the last try: k + 2 * per_pair
    assert stats.asked == len(backend.requests) == 8 + 6 + 4
    assert stats.rejected == {"narration": 12, "no answer": 1, "one speaker": 1}
    prompt = backend.requests[0].messages[0][1]
    assert prompt == GENERATE_PROMPT.format(topic="Dogs", emotion="anger")
    assert set(df["backend"]) == {"fake"} and set(df["model"]) == {"fake-model"}
    assert df["dialogue"].to_list()[0] == "A: About sample 2.\nB: Indeed."
    assert df["id"][0] == dialogue_id("fake", "fake-model", "Dogs", "anger", 0)


def test_stage_rejects_a_topics_file_without_topics(tmp_path):
    (tmp_path / "data").mkdir()
    pl.DataFrame({"topic": []}, schema={"topic": pl.String}).write_parquet(tmp_path / "data" / "topics.parquet")
    (tmp_path / "params.yaml").write_text(params_yaml({"generate": {"per_pair": 1}}))
    result = run_stage_script("generate", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["data/topics.parquet: 0 topics (need at least 1)"]
    assert not (tmp_path / "data" / "dialogues.parquet").exists()


@pytest.mark.slow
def test_stage_writes_dialogues_and_report(tmp_path):
    (tmp_path / "data").mkdir()
    topics = pl.DataFrame({"topic": ["Dogs", "sushi"], "round": [0, 1], "parent": [None, "Dogs"]})
    topics.write_parquet(tmp_path / "data" / "topics.parquet")
    (tmp_path / "params.yaml").write_text(params_yaml({"generate": {"per_pair": 2, "emotions": ["anger", "fear", "surprise"]}}))
    result = run_stage_script("generate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    df = pl.read_parquet(tmp_path / "data" / "dialogues.parquet")
    report = json.loads((tmp_path / "reports" / "generate.json").read_text())
    assert df.height == report["generated"] == report["planned"] == 12
    assert report["per_emotion"] == {"anger": 4, "fear": 4, "surprise": 4}
    assert report["backend"] == "template" and report["dropped"] == 0
