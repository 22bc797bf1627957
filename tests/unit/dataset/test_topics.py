"""augment: near-duplicate folding, the round procedure (re-asks, drops), the template and LLM
proposers, and the stage's one-line errors."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from emoneurons.backends.chat import ChatRequest
from emoneurons.backends.template_topics import TOPIC_BANK, alternative_candidates, template_alternative, topic_category
from emoneurons.dataset.topics import (
    EXISTING_SAMPLE,
    augment_topics,
    clean_alternative,
    existing_sample,
    fold_duplicates,
    llm_proposer,
    parse_seed_topics,
    select_seeds,
    template_proposer,
    topic_key,
)
from emoneurons.io.tables import DataError
from emoneurons.text.paper_prompts.augment import AUGMENT_PROMPT
from helpers.fakes import FakeChat
from helpers.repo_params import params_yaml
from helpers.stage_runner import REPO, run_stage_script

SEEDS = REPO / "data" / "seeds" / "topics.txt"


def test_topic_key_folds_case_whitespace_and_punctuation():
    assert topic_key("Dogs") == topic_key("dogs ") == topic_key("  DOGS")
    assert topic_key("U.S. Senate") == topic_key("us senate") == topic_key("US  Senate")
    assert topic_key("Post-structuralism") == topic_key("post structuralism")
    assert topic_key("Dogs") != topic_key("Cats")
    assert topic_key("...") == ""


def test_fold_duplicates_keeps_first_spelling_in_order():
    topics = ["Dogs", "cats", "dogs ", "U.S. Senate", "us senate", "Cats", "Paris,  France"]
    assert fold_duplicates(topics) == ["Dogs", "cats", "U.S. Senate", "Paris, France"]


def test_the_seed_file_folds_its_near_duplicates():
    seeds = parse_seed_topics(SEEDS.read_text())
    assert len(seeds) == 315
    unique = fold_duplicates(seeds)
    assert "Dogs" in unique and "dogs" not in unique  # "Dogs" comes first in the file
    assert "cooking" not in unique and "Cooking" in unique
    assert len(unique) == len({topic_key(t) for t in seeds}) < 315


def test_parse_seed_topics_skips_blanks_and_comments():
    assert parse_seed_topics("# seeds\nDogs\n\n  knitting  \n\t\n") == ["Dogs", "knitting"]


def test_select_seeds_fails_with_the_numbers():
    with pytest.raises(DataError, match=r"^topics.txt: 0 topics \(need at least 1\)$"):
        select_seeds([], 1, "topics.txt")
    with pytest.raises(DataError) as error:
        select_seeds(["Dogs", "dogs", "Cats"], 3, "topics.txt")
    message = str(error.value)
    assert "2 unique topics" in message and "3 lines" in message and "n_seed asks for 3" in message
    assert select_seeds(["Dogs", "dogs", "Cats", "Birds"], 2, "x") == ["Dogs", "Cats"]


def _counting_proposer(duplicate_for: dict[str, int]) -> tuple[Callable, list[list[tuple[str, int]]]]:
    """Answers "<topic> alt<attempt>", except that a topic in `duplicate_for` answers a duplicate
    ("DOGS") on its first n attempts."""
    calls: list[list[tuple[str, int]]] = []

    def propose(asks, pool):
        calls.append(list(asks))
        return ["DOGS" if attempt < duplicate_for.get(topic, 0) else f"{topic} alt{attempt}" for topic, attempt in asks]

    return propose, calls


def test_rounds_double_the_pool():
    propose, calls = _counting_proposer({})
    table, stats = augment_topics(["Dogs", "Cats", "dogs", "Birds"], 3, 2, propose, max_retries=3)
    assert table.height == 12  # 3 -> 6 -> 12
    assert table["round"].to_list() == [0] * 3 + [1] * 3 + [2] * 6
    assert table["parent"].to_list()[:3] == [None] * 3
    assert table.filter(table["topic"] == "Dogs alt0")["parent"].to_list() == ["Dogs"]
    assert table.filter(table["topic"] == "Dogs alt0 alt0")["round"].to_list() == [2]
    # In round 2 each seed first repeats its round-1 answer ("Dogs alt0"): a duplicate, re-asked.
    assert table.filter(table["topic"] == "Dogs alt1")["round"].to_list() == [2]
    assert stats.per_round == [3, 3, 6] and stats.dropped == 0
    assert stats.asked == 3 + 6 + 3 and stats.duplicates_reasked == 3
    assert len(calls) == 3


def test_duplicates_are_reasked_then_dropped():
    # Cats repeats Dogs once (re-asked, then fine); Birds repeats it on every attempt (dropped).
    propose, calls = _counting_proposer({"Cats": 1, "Birds": 99})
    table, stats = augment_topics(["Dogs", "Cats", "Birds"], 3, 1, propose, max_retries=2)
    assert table["topic"].to_list() == ["Dogs", "Cats", "Birds", "Dogs alt0", "Cats alt1"]
    assert calls == [[("Dogs", 0), ("Cats", 0), ("Birds", 0)], [("Cats", 1), ("Birds", 1)], [("Birds", 2)]]
    assert stats.duplicates_reasked == 3 and stats.dropped == 1 and stats.asked == 6
    assert stats.per_round == [3, 2]


def test_two_answers_colliding_in_one_batch_keep_the_first():
    def propose(asks, pool):
        return ["Hamsters" if attempt == 0 else f"{topic} {attempt}" for topic, attempt in asks]

    table, stats = augment_topics(["Dogs", "Cats"], 2, 1, propose, max_retries=3)
    assert table["topic"].to_list() == ["Dogs", "Cats", "Hamsters", "Cats 1"]
    assert stats.duplicates_reasked == 1


def test_unusable_answers_count_as_invalid_not_duplicate():
    def propose(asks, pool):
        return [None if attempt == 0 else f"{topic} new" for topic, attempt in asks]

    table, stats = augment_topics(["Dogs"], 1, 1, propose, max_retries=0)
    assert table.height == 1 and stats.dropped == 1 and stats.invalid_reasked == 0
    table, stats = augment_topics(["Dogs"], 1, 1, propose, max_retries=1)
    assert table["topic"].to_list() == ["Dogs", "Dogs new"] and stats.invalid_reasked == 1


def test_template_alternatives_are_seeded_short_and_related():
    seeds = fold_duplicates(parse_seed_topics(SEEDS.read_text()))[:40]
    first = [template_alternative(t, 0, seed=0) for t in seeds]
    assert first == [template_alternative(t, 0, seed=0) for t in seeds]
    assert first != [template_alternative(t, 0, seed=1) for t in seeds]
    assert all(a and 1 <= len(a.split()) <= 4 for a in first)
    assert all(topic_key(a) != topic_key(t) for a, t in zip(first, seeds))
    # A topic in the bank gets another member of its category first.
    assert topic_category("knitting") == "crafts"
    assert template_alternative("knitting", 0, seed=0) in TOPIC_BANK["crafts"]
    # A re-ask gets a different candidate; candidates never repeat.
    candidates = list(alternative_candidates("making dog treats", seed=0))
    assert len(candidates) == len(set(candidates)) > 20
    assert template_alternative("making dog treats", 1, 0) == candidates[1] != candidates[0]


def test_template_proposer_skips_topics_already_in_the_pool():
    first, second = list(alternative_candidates("knitting", seed=0))[:2]
    propose = template_proposer(0)
    assert propose([("knitting", 0)], ["knitting"]) == [first]
    assert propose([("knitting", 0)], ["knitting", first.upper()]) == [second]
    assert propose([("knitting", 1)], ["knitting", first]) == [list(alternative_candidates("knitting", 0))[2]]
    # A name is never composed with a modifier; its category's common nouns are.
    names = list(alternative_candidates("Virginia Woolf", seed=0))
    assert not any(n.endswith("Woolf") for n in names) and any(n.endswith("Poetry") for n in names)


def test_template_augment_on_real_seeds_grows_the_pool():
    seeds = parse_seed_topics(SEEDS.read_text())
    table, stats = augment_topics(seeds, 40, 2, template_proposer(0), max_retries=3)
    first, second = stats.per_round[1], stats.per_round[2]
    # Each round asks one alternative per topic in the pool; only dropped ones are missing.
    assert stats.dropped == (40 - first) + (40 + first - second)
    assert table.height == sum(stats.per_round) == 160 - (40 - first) * 2 - (40 + first - second)
    assert len({topic_key(t) for t in table["topic"]}) == table.height
    assert stats.dropped <= 4 and stats.asked >= 40 + 40 + first


@pytest.mark.parametrize(
    ("answer", "cleaned"),
    [
        ('"Los Angeles".', "Los Angeles"),
        ("- Violin\n", "Violin"),
        ("**Microsoft**", "Microsoft"),
        ("1. NATO", "NATO"),
        ('"Piano" → "Violin"', "Violin"),
        ("Alternative: Cats", "Cats"),
        ("Cats\nThis is a related term.", "Cats"),
        ("", None),
        ("   \n ", None),
        (None, None),
        ("a very long answer that explains itself", None),
        ('"..."', None),
    ],
)
def test_clean_alternative(answer, cleaned):
    assert clean_alternative(answer) == cleaned


def test_existing_sample_is_bounded_seeded_and_starts_with_the_topic():
    pool = [f"topic {i}" for i in range(200)]
    sample = existing_sample(pool, "topic 7", 0, seed=0)
    assert sample[0] == "topic 7" and len(sample) == EXISTING_SAMPLE == len(set(sample))
    assert sample == existing_sample(pool, "topic 7", 0, seed=0)
    assert sample != existing_sample(pool, "topic 7", 1, seed=0)
    assert existing_sample(["a", "b"], "a", 0, 0) == ["a", "b"]


def test_llm_proposer_asks_the_papers_prompt_and_reasks_duplicates():
    def reply(request: ChatRequest) -> str:
        prompt = request.messages[0][1]
        topic = prompt.split('"')[1]
        # The first answer for Cats repeats "Dogs"; a re-ask (sample 1) gives a new term.
        if topic == "Cats" and request.sample == 0:
            return '"Dogs".'
        return f"{topic} Club"

    backend = FakeChat(reply)
    table, stats = augment_topics(["Dogs", "Cats"], 2, 1, llm_proposer(backend, seed=0), max_retries=3)
    assert table["topic"].to_list() == ["Dogs", "Cats", "Dogs Club", "Cats Club"]
    assert [(r.messages[0][0], r.sample) for r in backend.requests] == [("user", 0), ("user", 0), ("user", 1)]
    prompt = backend.requests[0].messages[0][1]
    assert prompt.startswith(AUGMENT_PROMPT.split("{topic}")[0] + "Dogs")
    assert "existing list: Dogs, Cats Example Transformations" in prompt
    assert stats.duplicates_reasked == 1 and stats.dropped == 0


def test_llm_proposer_shows_only_a_bounded_sample_of_a_large_pool():
    backend = FakeChat(lambda r: None)
    seeds = [f"seed topic {i}" for i in range(100)]
    augment_topics(seeds, 100, 1, llm_proposer(backend, seed=0), max_retries=0)
    existing = backend.requests[5].messages[0][1].split("existing list: ")[1].split(" Example")[0].split(", ")
    assert existing[0] == "seed topic 5" and len(existing) == EXISTING_SAMPLE


def _run_stage(tmp_path: Path, params: dict, seeds: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "params.yaml").write_text(params_yaml(params))
    if seeds is not None:
        (tmp_path / "data" / "seeds").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "seeds" / "topics.txt").write_text(seeds)
    return run_stage_script("augment", cwd=tmp_path)


@pytest.mark.parametrize(
    ("params", "seeds", "expected"),
    [
        ({"augment": {"n_seed": 1}}, "\n\n", "data/seeds/topics.txt: 0 topics (need at least 1)"),
        ({"augment": {"n_seed": 3}}, "Dogs\ndogs\nCats\n", "data/seeds/topics.txt: 2 unique topics (3 lines, 1 near-duplicates folded), but augment.n_seed asks for 3; allowed: 1..2"),
        ({"augment": {"n_seed": 1}}, None, "data/seeds/topics.txt: file not found"),
        ({"augment": {"backend": "gpt"}}, "Dogs\n", "params.yaml: augment.backend: allowed: 'template', 'openai' or 'hf' (got 'gpt')"),
    ],
)
def test_stage_fails_in_one_line_and_writes_nothing(tmp_path, params, seeds, expected):
    result = _run_stage(tmp_path, params, seeds)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "data" / "topics.parquet").exists()
    assert not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_stage_writes_topics_and_report(tmp_path):
    result = _run_stage(tmp_path, {"augment": {"n_seed": 3, "rounds": 2}}, "Dogs\ndogs \nknitting\nU.S. Senate\nus senate\n")
    assert result.returncode == 0, result.stderr
    import polars as pl

    table = pl.read_parquet(tmp_path / "data" / "topics.parquet")
    report = json.loads((tmp_path / "reports" / "augment.json").read_text())
    assert table.height == report["topics"] == 12 - report["dropped"]
    assert table["topic"].to_list()[:3] == ["Dogs", "knitting", "U.S. Senate"]
    assert report["backend"] == report["model"] == "template"
    assert report["seeds_read"] == 5 and report["per_round"][0] == 3


def test_template_reaches_the_papers_scale():
    # 302 unique seeds x 2^4 = 4,832 topics if nothing were dropped (the paper: 315 -> 5,040).
    seeds = parse_seed_topics(SEEDS.read_text())
    table, stats = augment_topics(seeds, 302, 4, template_proposer(0), max_retries=3)
    assert table.height == sum(stats.per_round) > 0.95 * 302 * 16
    assert table["topic"].map_elements(topic_key, return_dtype=str).n_unique() == table.height
    assert all(1 <= len(t.split()) <= 4 for t in table.filter(table["round"] > 0)["topic"])  # seeds may be longer
