"""filter: the agreement rule and its report, kappa on textbook examples, the judges (chat retry
prompt, hf on the tiny model, make_judges), and the stage end to end on the lexicon judge."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest

from emoneurons.backends.chat import ChatRequest
from emoneurons.backends.judges import ChatJudge, HFJudge, LexiconJudge, make_judges, relabel_invalid
from emoneurons.dataset.filtering import (
    agreement_filter,
    cohen_kappa,
    fleiss_kappa,
    fleiss_kappa_of_labels,
    judge_chance,
)
from emoneurons.emotions import EMOTIONS
from emoneurons.io.tables import DataError
from emoneurons.text.paper_prompts.label import LABEL_PROMPT, label_prompt
from helpers.fakes import FakeChat
from helpers.repo_params import params_dict, params_yaml, section
from helpers.stage_runner import run_stage_script


def _dialogues(themes: Sequence[str]) -> pl.DataFrame:
    n = len(themes)
    return pl.DataFrame({
        "id": [f"id{i}" for i in range(n)], "topic": ["Dogs"] * n, "theme": list(themes),
        "dialogue": [f"A: line {i}\nB: reply {i}" for i in range(n)], "backend": ["template"] * n, "model": ["template"] * n,
    })


def test_agreement_filter_keeps_exactly_the_rows_with_enough_agreement():
    df = _dialogues(["anger", "anger", "fear", "sadness", "surprise"])
    labels = {
        "j1": ["anger", "fear", "fear", None, "surprise"],
        "j2": ["anger", "anger", None, "happiness", "fear"],
    }
    kept, report = agreement_filter(df, labels, min_agree=2)
    assert kept["id"].to_list() == ["id0", "id1", "id2", "id4"]
    assert kept["n_agree"].to_list() == [3, 2, 2, 2]
    assert kept["judge_j1"].to_list() == ["anger", "fear", "fear", "surprise"]
    assert kept["judge_j2"].to_list() == ["anger", "anger", None, "fear"]
    assert kept["label"].to_list() == kept["theme"].to_list()
    assert kept.columns == ["id", "topic", "theme", "dialogue", "backend", "model", "judge_j1", "judge_j2", "n_agree", "label"]
    assert kept["n_agree"].dtype == pl.Int64

    strict, report3 = agreement_filter(df, labels, min_agree=3)
    assert strict["id"].to_list() == ["id0"]
    assert report3["dropped_per_emotion"] == {"anger": 1, "disgust": 0, "fear": 1, "happiness": 0, "sadness": 1, "surprise": 1}

    assert report["generated"] == 5 and report["kept"] == 4 and report["dropped"] == 1
    assert report["min_agree"] == 2 and report["judges"] == ["j1", "j2"]
    assert report["table1"]["anger"] == {"count": 2, "percent": 50.0}
    assert report["table1"]["fear"] == {"count": 1, "percent": 25.0}
    assert report["table1"]["disgust"] == {"count": 0, "percent": 0.0}
    assert report["table1"]["total"] == {"count": 4, "percent": 100.0}
    assert list(report["table1"]) == [*EMOTIONS, "total"]
    assert report["dropped_per_emotion"]["sadness"] == 1 and sum(report["dropped_per_emotion"].values()) == 1
    assert report["judge_agreement"] == {"j1": 0.6, "j2": 0.4}
    assert report["judge_invalid"] == {"j1": 1, "j2": 1}
    # j1 and j2 both labelled items 0, 1, 4: they agree on item 0 only.
    assert report["kappa"]["cohen"]["j1-j2"] == pytest.approx(cohen_kappa(["anger", "fear", "surprise"], ["anger", "anger", "fear"]), abs=1e-4)
    json.dumps(report)  # JSON-ready


def test_a_judge_answering_one_label_is_flagged_at_chance_and_a_good_one_is_not():
    themes = [e for e in EMOTIONS for _ in range(10)]
    df = _dialogues(themes)
    constant = ["anger"] * len(themes)  # the old default smollm judge's failure mode: 1/6 agreement
    good = [t if i % 5 else "fear" for i, t in enumerate(themes)]  # ~0.8
    _, report = agreement_filter(df, {"one_label": constant, "good": good}, min_agree=2)
    assert report["judge_chance"] == pytest.approx(1 / 6, abs=1e-4)
    assert report["judges_at_chance"] == ["one_label"]
    low, high = report["judge_agreement_ci95"]["one_label"]
    assert low < 1 / 6 < high
    assert report["judge_agreement_ci95"]["good"][0] > 1 / 6
    # Chance is the majority share when the intended emotions are unbalanced.
    assert judge_chance(["anger"] * 3 + ["fear"]) == 0.75


def test_filter_stage_warns_about_a_judge_at_chance(tmp_path):
    # Every dialogue is angry whatever its intended emotion: the lexicon answers anger throughout.
    themes = [e for e in EMOTIONS for _ in range(4)]
    df = _dialogues(themes).with_columns(pl.lit("A: I am so furious, this makes me angry!\nB: I am angry too.").alias("dialogue"))
    _write_dialogues(tmp_path, df, LEXICON_ONLY)
    result = run_stage_script("filter", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "reports" / "filter.json").read_text())
    assert report["judges_at_chance"] == ["lexicon"] and report["judge_agreement"]["lexicon"] == pytest.approx(1 / 6, abs=1e-4)
    assert "warning: judge 'lexicon' agrees with the intended emotion on 0.1667" in result.stderr


def test_min_agree_one_keeps_everything_and_nothing_kept_is_an_error():
    df = _dialogues(["anger", "fear"])
    kept, _ = agreement_filter(df, {"j": [None, "anger"]}, min_agree=1)
    assert kept.height == 2
    with pytest.raises(DataError) as error:
        agreement_filter(df, {"j": [None, "anger"], "k": ["fear", "fear"]}, min_agree=3)
    message = str(error.value)
    assert "kept 0 of 2 dialogues" in message and "min_agree 3 of 3 labels" in message
    assert "j 0.0" in message and "k 0.5" in message


def _judged(n: int, seed: int = 0) -> tuple[pl.DataFrame, dict[str, list[str | None]]]:
    """n dialogues and three judges who mostly agree with the intended emotion, sometimes not at all."""
    import random

    rng = random.Random(seed)
    themes = [EMOTIONS[rng.randrange(6)] for _ in range(n)]
    labels = {name: [t if rng.random() < 0.7 else rng.choice([*EMOTIONS, None]) for t in themes] for name in ("a", "b", "c")}
    return _dialogues(themes), labels


def _batches(df: pl.DataFrame, labels: dict, rows: int):
    for start in range(0, df.height, rows):
        yield df.slice(start, rows), {name: judged[start:start + rows] for name, judged in labels.items()}


def test_the_filter_in_batches_is_the_filter_of_the_whole_table(tmp_path):
    """filter_to_table holds a batch at a time: its table, report and check record are those of the whole table at once."""
    from emoneurons.dataset.filtering import filter_to_table
    from emoneurons.io.suites import check_dialogues, check_filtered
    from emoneurons.io.tables import read_table

    df, labels = _judged(45)
    kept, report = agreement_filter(df, labels, min_agree=3)
    assert 0 < kept.height < df.height and report["kappa"]["fleiss"] is not None
    got, checked = filter_to_table(_batches(df, labels, 16), df.height, list(labels), 3, tmp_path / "kept.parquet",
                                   input_source="in.parquet")
    assert read_table(tmp_path / "kept.parquet").equals(kept)
    assert got == report  # Table 1, agreement, intervals, kappas: from counts, the same numbers
    assert checked == check_dialogues(df, "in.parquet") + check_filtered(kept, list(labels), str(tmp_path / "kept.parquet"))


def test_the_filter_in_batches_sees_an_id_repeated_in_another_batch_and_writes_nothing(tmp_path):
    from emoneurons.dataset.filtering import filter_to_table
    from emoneurons.io.suites import DataCheckError

    df, labels = _judged(30)
    df = df.with_columns(pl.when(pl.int_range(pl.len()) == 25).then(pl.lit("id3")).otherwise(pl.col("id")).alias("id"))
    with pytest.raises(DataCheckError) as error:
        filter_to_table(_batches(df, labels, 16), df.height, list(labels), 1, tmp_path / "kept.parquet", input_source="in.parquet")
    assert str(error.value) == ("in.parquet: column 'id': expect_column_values_to_be_unique failed: 2 of 30 rows, "
                                "e.g. row 3 (id 'id3'): 'id3', row 25 (id 'id3'): 'id3'")
    with pytest.raises(DataError, match=r"kept 0 of 30 dialogues"):
        filter_to_table(_batches(df, {"j": [None] * 30}, 8), df.height, ["j"], 2, tmp_path / "kept.parquet")
    assert list(tmp_path.iterdir()) == []


def test_cohen_kappa_textbook_example():
    # 50 items, yes/no: both yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> p_o 0.7, p_e 0.5.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(["x"] * 3, ["x"] * 3) is None  # chance agreement 1: undefined
    assert cohen_kappa([None, "x"], ["y", None]) is None
    # Items a rater left unlabelled are not counted.
    assert cohen_kappa(a + [None], b + ["yes"]) == pytest.approx(0.4)


FLEISS_EXAMPLE = [  # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_textbook_example():
    assert fleiss_kappa(FLEISS_EXAMPLE) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 1], [2, 1]])


def test_fleiss_of_two_raters_is_close_to_cohen_and_perfect_is_one():
    a = ["anger", "fear", "fear", "sadness", "anger", "surprise"]
    b = ["anger", "fear", "sadness", "sadness", "fear", "surprise"]
    assert fleiss_kappa_of_labels([a, a, a]) == pytest.approx(1.0)
    assert fleiss_kappa_of_labels([a, b]) == pytest.approx(cohen_kappa(a, b), abs=0.05)
    assert fleiss_kappa_of_labels([a]) is None
    assert fleiss_kappa_of_labels([a + [None], b + ["fear"]]) == fleiss_kappa_of_labels([a, b])


def test_chat_judge_asks_the_retry_prompt_for_answers_outside_the_six():
    dialogues = ["A: d0\nB: x", "A: d1\nB: x", "A: d2\nB: x"]

    def reply(request: ChatRequest) -> str | None:
        prompt = request.messages[0][1]
        if prompt.startswith(LABEL_PROMPT[:40]) and "**Important" not in prompt:
            return {"d0": "Anger.", "d1": "joy", "d2": None}[prompt.split("A: ")[1][:2]]
        return {"d1": "happiness", "d2": "I cannot tell"}[prompt.split("A: ")[1][:2]]

    backend = FakeChat(reply)
    judge = ChatJudge("gpt", backend)
    assert judge.label(dialogues) == ["anger", "happiness", None]
    assert judge.reasked == 2
    assert [r.messages for r in backend.requests[:1]] == [(("user", label_prompt(dialogues[0])),)]
    assert [r.messages[0][1] for r in backend.requests[3:]] == [label_prompt(d, retry=True) for d in dialogues[1:]]


def test_relabel_invalid_leaves_valid_labels_alone():
    asked = []

    def again(texts):
        asked.append(list(texts))
        return ["fear"] * len(texts)

    assert relabel_invalid(["anger", None], ["a", "b"], again) == (["anger", "fear"], 1)
    assert relabel_invalid(["anger"], ["a"], again) == (["anger"], 0)
    assert asked == [["b"]]


def test_hf_judge_on_the_tiny_model(tiny_llama):
    from emoneurons.backends.judges import labelling_prompt
    from emoneurons.evaluate.classify import classify

    dialogues = ["A: I can't believe this happened!\nB: Oh no, that is terrible.", "A: What a wonderful day.\nB: Yes!"]
    scored = HFJudge("tiny", tiny_llama, "score", batch_size=2, classify=classify, prompt_format="chat").label(dialogues)
    assert len(scored) == 2 and all(label in EMOTIONS for label in scored)
    expected = classify(tiny_llama, labelling_prompt(tiny_llama.tokenizer, "chat"), dialogues, "score", batch_size=2, max_new_tokens=8, label_format="bare").predicted
    assert scored == expected

    judge = HFJudge("tiny", tiny_llama, "generate", batch_size=2, classify=classify, prompt_format="chat")
    labels = judge.label(dialogues)
    first = classify(tiny_llama, labelling_prompt(tiny_llama.tokenizer, "chat"), dialogues, "generate", batch_size=2, max_new_tokens=8, label_format="bare").predicted
    assert judge.reasked == sum(label is None for label in first)
    retry = classify(tiny_llama, labelling_prompt(tiny_llama.tokenizer, "chat", retry=True), dialogues, "generate", batch_size=2, max_new_tokens=8, label_format="bare").predicted
    assert labels == [a if a is not None else r for a, r in zip(first, retry)]


def test_make_judges_loads_the_model_once_and_wires_openai(monkeypatch, tiny_llama, tmp_path):
    import emoneurons.backends.factory as factory
    import emoneurons.model.loading as model
    from emoneurons.evaluate.classify import classify

    loads, backends = [], []
    monkeypatch.setattr(model, "load_model", lambda params: loads.append(params) or tiny_llama)

    def fake_backend(kind, **kwargs):
        backends.append((kind, kwargs))
        return FakeChat(lambda r: "fear")

    monkeypatch.setattr(factory, "make_chat_backend", fake_backend)
    params = section("filter", min_agree=2, judges=(
        {"name": "lex", "backend": "lexicon"}, {"name": "a", "backend": "hf", "method": "score"},
        {"name": "b", "backend": "hf", "method": "generate"}, {"name": "gpt", "backend": "openai", "openai": params_dict()["augment"]["openai"]},
    ))
    with pytest.raises(ValueError, match="hf judge 'a' needs classify="):  # generation does not import evaluate: the stage passes it in
        make_judges(params.judges, section("model", batch_size=3), tmp_path / "cache", prompt_format="auto")
    assert loads == []
    judges = make_judges(params.judges, section("model", batch_size=3), tmp_path / "cache", classify=classify, prompt_format="auto")
    assert [j.name for j in judges] == ["lex", "a", "b", "gpt"]
    assert isinstance(judges[0], LexiconJudge) and isinstance(judges[3], ChatJudge)
    assert len(loads) == 1 and judges[1].lm is judges[2].lm is tiny_llama
    assert judges[2].method == "generate" and judges[1].batch_size == 3
    assert backends == [("openai", {"openai": params.judges[3].openai, "cache_dir": tmp_path / "cache"})]
    assert judges[3].label(["A: x\nB: y"]) == ["fear"]


def _write_dialogues(tmp_path: Path, df: pl.DataFrame, params: str) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    df.write_parquet(tmp_path / "data" / "dialogues.parquet")
    (tmp_path / "params.yaml").write_text(params)


LEXICON_ONLY = params_yaml({"filter": {"min_agree": 2, "judges": [{"name": "lexicon", "backend": "lexicon"}]}})


def test_stage_fails_in_one_line_when_nothing_is_kept(tmp_path):
    _write_dialogues(tmp_path, _dialogues(["anger", "fear"]), LEXICON_ONLY)
    result = run_stage_script("filter", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "filter: kept 0 of 2 dialogues (min_agree 2 of 2 labels; judge agreement with the intended emotion: lexicon 0.0)"
    ]
    assert not (tmp_path / "data" / "filtered.parquet").exists() and not (tmp_path / "reports").exists()


def test_a_rejected_input_leaves_no_cache_folder(tmp_path):
    # The request cache is a DVC output: made only once the input passed its checks.
    _write_dialogues(tmp_path, _dialogues(["anger", "fear"]).drop("theme"), LEXICON_ONLY)
    result = run_stage_script("filter", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["data/dialogues.parquet: no column 'theme' (has id, topic, dialogue, backend, model)"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["data", "data/dialogues.parquet", "params.yaml"]


@pytest.mark.slow
def test_stages_augment_generate_filter_end_to_end(tmp_path):
    (tmp_path / "data" / "seeds").mkdir(parents=True)
    (tmp_path / "data" / "seeds" / "topics.txt").write_text("Dogs\ndogs\nsushi\nknitting\nU.S. Senate\n")
    (tmp_path / "params.yaml").write_text(params_yaml({
        "augment": {"n_seed": 3, "rounds": 1}, "generate": {"per_pair": 2},
        "filter": {"min_agree": 2, "judges": [{"name": "lexicon", "backend": "lexicon"}]},
    }))
    for stage in ("augment", "generate", "filter"):
        result = run_stage_script(stage, cwd=tmp_path, timeout=600)
        assert result.returncode == 0, f"{stage}: {result.stderr}"
    dialogues = pl.read_parquet(tmp_path / "data" / "dialogues.parquet")
    kept = pl.read_parquet(tmp_path / "data" / "filtered.parquet")
    report = json.loads((tmp_path / "reports" / "filter.json").read_text())
    assert dialogues.height == 6 * 6 * 2
    assert report["generated"] == dialogues.height and report["kept"] == kept.height
    assert kept.height == dialogues.height - report["dropped"] and 0 < kept.height <= dialogues.height
    assert (kept["n_agree"] >= 2).all() and (kept["judge_lexicon"] == kept["theme"]).all()
    # The lexicon's agreement is what the kept share says it is (one judge, min_agree 2).
    assert report["judge_agreement"]["lexicon"] == round(kept.height / dialogues.height, 4)
    assert report["judges"] == ["lexicon"] and report["kappa"]["cohen"] == {} and report["kappa"]["fleiss"] is None \
        and list(report["kappa"]["cohen_vs_intended"]) == ["lexicon"]
