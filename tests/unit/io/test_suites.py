"""The great-expectations suites: pass on good tables, fail with one line naming what is wrong."""

from __future__ import annotations

from functools import partial

import polars as pl
import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.io import result_suites, suites
from emoneurons.io.suites import DataCheckError
from emoneurons.io.tables import DataError

JUDGES = ("lexicon", "smollm")
# The library names no stage path: the stages pass the file each table came from, as these do.
check_topics = partial(suites.check_topics, source="data/topics.parquet")
check_dialogues = partial(suites.check_dialogues, source="data/dialogues.parquet")
check_filtered = partial(suites.check_filtered, source="data/filtered.parquet")
check_split = partial(suites.check_split, sources=("data/split/train.parquet", "data/split/test.parquet"))
check_counts = partial(suites.check_counts, source="data/counts/counts.safetensors")


def _dialogues(per_emotion: int = 2) -> pl.DataFrame:
    rows = [
        {
            "id": f"{emotion[:3]}{k}",
            "topic": f"topic {k}",
            "theme": emotion,
            "dialogue": f"A: I feel {emotion} about topic {k}.\nB: Really?\nA: Yes.",
            "backend": "template",
            "model": "none",
        }
        for emotion in EMOTIONS
        for k in range(per_emotion)
    ]
    return pl.DataFrame(rows)


def _filtered(per_emotion: int = 2) -> pl.DataFrame:
    df = _dialogues(per_emotion)
    return df.with_columns(
        judge_lexicon=pl.col("theme"),
        judge_smollm=pl.lit(None, dtype=pl.String),
        n_agree=pl.lit(2, dtype=pl.Int64),
        label=pl.col("theme"),
    )


def _set(df: pl.DataFrame, row: int, column: str, value) -> pl.DataFrame:
    values = df[column].to_list()
    values[row] = value
    return df.with_columns(pl.Series(column, values, dtype=df.schema[column]))


def _failure(check, *args) -> str:
    with pytest.raises(DataCheckError) as error:
        check(*args)
    message = str(error.value)
    assert "\n" not in message, message
    assert isinstance(error.value, DataError)
    return message


# topics


def _topics() -> pl.DataFrame:
    return pl.DataFrame(
        {"topic": ["Piano", "New York", "Violin"], "round": [0, 0, 1], "parent": [None, None, "Piano"]}
    )


def assert_all_passed(checked: list[dict]) -> None:
    """A passing check returns what it ran, every entry passed (the stage saves it)."""
    assert checked and all(entry["passed"] for entry in checked)
    assert all(set(entry) == {"file", "expectation", "column", "passed"} for entry in checked)


def test_topics_pass():
    assert_all_passed(check_topics(_topics()))


def test_topics_duplicate_up_to_case_and_whitespace_fails():
    bad = _set(_topics(), 2, "topic", "  new   york ")
    message = _failure(check_topics, bad)
    assert message.startswith("data/topics.parquet: column 'topic': unique")
    assert "'New York'" in message and "'  new   york '" in message


def test_topics_blank_topic_fails():
    message = _failure(check_topics, _set(_topics(), 1, "topic", "   "))
    assert "column 'topic': expect_column_values_to_match_regex failed: 1 of 3 rows" in message
    assert "row 1" in message


def test_topics_missing_column_and_negative_round_fail():
    message = _failure(check_topics, _topics().drop("parent"))
    assert "expect_table_columns_to_match_set" in message and "'parent'" in message
    message = _failure(check_topics, _set(_topics(), 0, "round", -1))
    assert "column 'round': expect_column_values_to_be_between" in message


# dialogues


def test_dialogues_pass():
    assert_all_passed(check_dialogues(_dialogues()))


def test_dialogues_unknown_emotion_fails():
    message = _failure(check_dialogues, _set(_dialogues(), 3, "theme", "joy"))
    assert message.startswith("data/dialogues.parquet: column 'theme': expect_column_values_to_be_in_set")
    assert "row 3 (id 'dis1'): 'joy'" in message


def test_dialogues_duplicate_id_fails():
    message = _failure(check_dialogues, _set(_dialogues(), 5, "id", "ang0"))
    assert "column 'id': expect_column_values_to_be_unique failed: 2 of 12 rows" in message
    assert "'ang0'" in message


def test_dialogues_narration_line_fails_naming_the_line():
    text = "A: Hello.\n(She sighs deeply.)\nB: Hi."
    message = _failure(check_dialogues, _set(_dialogues(), 7, "dialogue", text))
    assert "column 'dialogue': expect_column_values_to_match_regex failed: 1 of 36 lines" in message
    assert "row 7 (id 'hap1') line 2: '(She sighs deeply.)'" in message


def test_dialogues_other_forms_fail():
    one_speaker = _set(_dialogues(), 0, "dialogue", "A: Hello.\nA: Anyone?")
    assert "expect_column_values_to_match_regex_list" in _failure(check_dialogues, one_speaker)
    assert "row 0 (id 'ang0') line 1: ''" in _failure(
        check_dialogues, _set(_dialogues(), 0, "dialogue", "")
    )
    assert "column 'dialogue': expect_column_values_to_not_be_null" in _failure(
        check_dialogues, _set(_dialogues(), 0, "dialogue", None)
    )
    assert "'C: Me too.'" in _failure(
        check_dialogues, _set(_dialogues(), 0, "dialogue", "A: Hi.\nB: Hi.\nC: Me too.")
    )


def test_dialogues_lists_every_failure_in_suite_order():
    bad = _set(_set(_dialogues(), 1, "theme", "love"), 2, "id", "ang0")
    message = _failure(check_dialogues, bad)
    assert message.index("column 'id'") < message.index("column 'theme'")


# filtered


def test_filtered_pass():
    assert_all_passed(check_filtered(_filtered(), JUDGES))


def test_filtered_judge_outside_the_six_fails():
    message = _failure(check_filtered, _set(_filtered(), 4, "judge_lexicon", "neutral"), JUDGES)
    assert "column 'judge_lexicon': expect_column_values_to_be_in_set" in message
    assert "'neutral'" in message


def test_filtered_n_agree_and_label_fail():
    message = _failure(check_filtered, _set(_filtered(), 0, "n_agree", 4), JUDGES)
    assert "column 'n_agree': expect_column_values_to_be_between" in message
    message = _failure(check_filtered, _set(_filtered(), 0, "label", "fear"), JUDGES)
    assert "column 'label/theme': expect_column_pair_values_to_be_equal" in message
    floats = _filtered().with_columns(pl.col("n_agree").cast(pl.Float64))
    assert "column 'n_agree': expect_column_values_to_be_in_type_list" in _failure(check_filtered, floats, JUDGES)


def test_filtered_missing_judge_column_fails():
    message = _failure(check_filtered, _filtered(), (*JUDGES, "gpt"))
    assert "expect_table_columns_to_match_set" in message and "'judge_gpt'" in message


# split


def _parts() -> tuple[pl.DataFrame, pl.DataFrame]:
    df = _filtered(per_emotion=5)
    test = df.filter(pl.col("id").str.ends_with("0"))
    return df.filter(~pl.col("id").str.ends_with("0")), test


def test_split_pass():
    assert_all_passed(check_split(*_parts(), 0.2))


def test_split_id_in_both_fails():
    train, test = _parts()
    train = pl.concat([train, test.head(1)])
    message = _failure(check_split, train, test, 0.2)
    assert "column 'id': expect_column_values_to_be_unique" in message
    assert "'ang0'" in message


def test_split_null_id_fails_naming_the_row():
    train, test = _parts()
    train = train.with_columns(id=pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("id")))
    message = _failure(check_split, train, test, 0.2)
    assert message.startswith("data/split/train.parquet: column 'id': expect_column_values_to_not_be_null")
    assert "1 of 24 rows, e.g. row 3" in message, message


def test_split_checks_record_what_ran_on_the_ids_themselves():
    """GX runs on integer codes of the ids (memory); the record is the one the ids would give."""
    train, test = _parts()
    record = check_split(train, test, 0.2)
    assert [(c["file"], c["expectation"], c["column"]) for c in record] == [
        *[(f"data/split/{part}.parquet", kind, column) for part in ("train", "test") for kind, column in (
            ("expect_table_row_count_to_be_between", None), ("expect_column_values_to_not_be_null", "id"),
            ("expect_column_distinct_values_to_contain_set", "theme"))],
        ("data/split/train.parquet + data/split/test.parquet", "expect_column_values_to_be_unique", "id"),
        ("data/split/test.parquet", "test share 0.2 per emotion", "theme")]


def test_split_emotion_missing_from_test_fails_naming_it():
    train, test = _parts()
    message = _failure(check_split, train, test.filter(pl.col("theme") != "surprise"), 0.2)
    assert message.startswith("data/split/test.parquet: column 'theme': expect_column_distinct_values_to_contain_set")
    assert "missing 'surprise'" in message


def test_split_wrong_share_and_empty_part_fail():
    train, test = _parts()
    message = _failure(check_split, train, test, 0.6)  # 1 of 5 per emotion, asked for 3
    assert "test share 0.6 per emotion failed" in message and "'anger' has 1 of 5 in test, expected 3" in message
    message = _failure(check_split, train, test.head(0), 0.2)
    assert "expect_table_row_count_to_be_between" in message


# counts


def _counts() -> tuple[torch.Tensor, torch.Tensor]:
    T = torch.tensor([10, 20, 30, 40, 50, 60])
    f = torch.zeros(2, 3, 6, dtype=torch.int64)
    f[1, 2] = T
    return f, T


def test_counts_pass():
    assert_all_passed(check_counts(*_counts()))


def test_counts_over_total_fails_naming_the_neuron():
    f, T = _counts()
    f[0, 1, 3] = 41
    message = _failure(check_counts, f, T)
    assert "tensor 'f': f <= T per emotion failed: 1 entries, e.g. (layer 0, neuron 1, happiness): 41 > 40" in message


def test_counts_shape_dtype_and_sign_fail():
    f, T = _counts()
    assert "shape [layers, neurons, 6]" in _failure(check_counts, f[..., :5], T)
    assert "shape [6]" in _failure(check_counts, f, T[:5])
    assert "integer dtype" in _failure(check_counts, f.float(), T)
    T = T.clone()
    T[2] = -1
    assert "tensor 'T': non-negative failed" in _failure(check_counts, f.clamp(max=0), T)


# neurons (select)

check_neurons = partial(result_suites.check_neurons, source="data/neurons/neurons.json")


def _neurons() -> dict:
    """neurons.json for 2 layers x 4 neurons: ratio 0.25 selects two, ratio 0.01 none."""
    none = {e: [] for e in EMOTIONS}
    return {
        "top_rate": 0.25, "assign": "lape", "layers": 2, "neurons_per_layer": 4,
        "ratios": {
            "0.25": {"entropy_threshold": 0.1, "selected": 2,
                     "neurons": {**none, "anger": [[0, 0]], "surprise": [[1, 3]]},
                     "per_emotion": {**{e: 0 for e in EMOTIONS}, "anger": 1, "surprise": 1}, "per_layer": {}},
            "0.01": {"entropy_threshold": None, "selected": 0, "neurons": none,
                     "per_emotion": {e: 0 for e in EMOTIONS}, "per_layer": {}},
        },
    }


def test_neurons_pass():
    assert_all_passed(check_neurons(_neurons()))


def test_neurons_out_of_range_and_duplicates_fail_naming_the_neuron():
    bad = _neurons()
    bad["ratios"]["0.25"]["neurons"]["surprise"] = [[1, 4]]  # index == neurons_per_layer
    message = _failure(check_neurons, bad)
    assert message.startswith("data/neurons/neurons.json: column 'index': expect_column_values_to_be_between failed")
    assert "(id 'ratio 0.25 surprise (1, 4)')" in message
    bad = _neurons()
    bad["ratios"]["0.25"]["neurons"]["anger"] = [[0, 0], [0, 0]]
    bad["ratios"]["0.25"]["per_emotion"]["anger"] = 2
    message = _failure(check_neurons, bad)
    assert "column 'ratio/emotion/layer/index': expect_compound_columns_to_be_unique failed: 2 of 3 rows" in message
    assert "(id 'ratio 0.25 anger (0, 0)')" in message


def test_neurons_unknown_emotion_and_wrong_counts_fail():
    bad = _neurons()
    bad["ratios"]["0.01"]["neurons"]["joy"] = [[0, 1]]
    message = _failure(check_neurons, bad)
    assert "column 'emotion': expect_column_values_to_be_in_set failed" in message and "'joy'" in message
    bad = _neurons()
    bad["ratios"]["0.25"]["per_emotion"]["anger"] = 3
    assert "counts match the listed neurons failed: ratio 0.25 anger: per_emotion 3 but 1 listed" in _failure(check_neurons, bad)
    bad = _neurons()
    del bad["ratios"]["0.01"]["neurons"]["fear"]
    assert "every emotion listed per ratio failed: missing ratio 0.01: 'fear'" in _failure(check_neurons, bad)


# evaluation (mask-eval)

check_evaluation = partial(result_suites.check_evaluation, source="reports/metrics/eval.json")
PLANNED = ["unmodified", "mask-anger-r0.01-all", "control-anger-r0.01-all-d0"]


def _condition(cid: str, right: int = 6) -> dict:
    """One eval.json condition over 12 test dialogues, 2 per emotion, `right` of them correct."""
    confusion = [[2 if i == j else 0 for j in range(6)] for i in range(6)]
    return {"id": cid, "accuracy": {**{e: 0.5 for e in EMOTIONS}, "overall": right / 12},
            "ci95": {**{e: [0.01, 0.99] for e in EMOTIONS}, "overall": [0.2, 0.8]},
            "confusion": confusion, "unparseable": {e: 0 for e in EMOTIONS}, "predicted": ["anger"] * 12,
            **({} if cid == "unmodified" else {"mcnemar": {"worse": 1, "better": 0, "p": 1.0}})}


def _evaluation() -> dict:
    return {"n_test": 12, "conditions": [_condition(cid) for cid in PLANNED]}


def test_evaluation_pass():
    assert_all_passed(check_evaluation(_evaluation(), PLANNED, 12))


def test_evaluation_missing_or_repeated_condition_fails_naming_it():
    bad = _evaluation()
    del bad["conditions"][1]
    message = _failure(check_evaluation, bad, PLANNED, 12)
    assert "column 'id': expect_column_distinct_values_to_contain_set failed: missing 'mask-anger-r0.01-all'" in message
    bad = _evaluation()
    bad["conditions"].append(_condition("unmodified"))
    assert "column 'id': expect_column_values_to_be_unique failed: 2 of 4 rows" in _failure(check_evaluation, bad, PLANNED, 12)
    bad = _evaluation()
    bad["conditions"][2]["id"] = "control-anger-r0.01-all-d1"
    message = _failure(check_evaluation, bad, PLANNED, 12)
    assert "column 'id': expect_column_values_to_be_in_set failed" in message
    assert "(id 'control-anger-r0.01-all-d1')" in message


def test_evaluation_rates_outside_zero_one_and_wrong_counts_fail():
    bad = _evaluation()
    bad["conditions"][1]["accuracy"]["fear"] = 1.5
    message = _failure(check_evaluation, bad, PLANNED, 12)
    assert "column 'accuracy_fear': expect_column_values_to_be_between failed: 1 of 3 rows" in message
    assert "(id 'mask-anger-r0.01-all'): 1.5" in message
    bad = _evaluation()
    bad["conditions"][2]["ci95"]["overall"] = [0.9, 0.1]
    assert "column 'ci95_high_overall/ci95_low_overall': expect_column_pair_values_a_to_be_greater_than_b" in _failure(
        check_evaluation, bad, PLANNED, 12)
    bad = _evaluation()
    bad["conditions"][0]["predicted"] = ["anger"] * 11
    assert "column 'n_predicted': expect_column_values_to_be_between" in _failure(check_evaluation, bad, PLANNED, 12)
    assert "column 'n_counted': expect_column_values_to_be_between" in _failure(check_evaluation, _evaluation(), PLANNED, 13)


# cards

check_cards = partial(result_suites.check_cards, layers=2, neurons_per_layer=4, source="reports/cards/cards.json")


def _cards() -> dict:
    def card(layer, index, p):
        return {"layer": layer, "index": index, "P": {"anger": p, "fear": 0.1}, "entropy": 1.0}
    return {"top_neurons": 2, "emotions": {**{e: {"selected": 0, "cards": []} for e in EMOTIONS},
                                           "anger": {"selected": 3, "cards": [card(1, 3, 0.9), card(0, 0, 0.5)]}}}


def test_cards_pass():
    assert_all_passed(check_cards(_cards()))


def test_cards_out_of_range_repeated_and_too_many_fail():
    bad = _cards()
    bad["emotions"]["anger"]["cards"][0]["layer"] = 2
    message = _failure(check_cards, bad)
    assert message.startswith("reports/cards/cards.json: column 'layer': expect_column_values_to_be_between failed")
    assert "(id 'anger (2, 3)'): 2" in message
    bad = _cards()
    bad["emotions"]["anger"]["cards"].append(dict(bad["emotions"]["anger"]["cards"][1]))
    message = _failure(check_cards, bad)
    assert "column 'emotion/layer/index': expect_compound_columns_to_be_unique" in message
    assert "at most top_neurons (2) cards per emotion failed: anger has 3" in message
    bad = _cards()
    bad["emotions"]["joy"] = bad["emotions"].pop("anger")
    assert "column 'emotion': expect_column_values_to_be_in_set" in _failure(check_cards, bad)


# steer

check_steer = partial(result_suites.check_steer, alphas=[0, 4], control_draws=1, source="reports/steer/steer.json")


def _steer() -> dict:
    def condition(alpha, share, **extra):
        return {"alpha": alpha, "share": share, "judges": {"lexicon": {"share": share / 2}}, **extra}

    steered = [condition(0, 0.2), condition(4, 0.6)]
    controls = [condition(0, 0.2, draw=0), condition(4, 0.3, draw=0)]
    return {"alphas": [0, 4],
            "unmodified": {"per_emotion": {e: {"share": 0.1, "logp": -2.0} for e in EMOTIONS},
                           "judges": {"lexicon": {"share": {e: 0.05 for e in EMOTIONS}}}},
            "emotions": {**{e: {"n_neurons": 0, "steered": [], "controls": []} for e in EMOTIONS},
                         "anger": {"n_neurons": 3, "steered": steered, "controls": controls}}}


def test_steer_pass():
    assert_all_passed(check_steer(_steer()))


def test_steer_share_outside_zero_one_fails_naming_the_condition():
    bad = _steer()
    bad["emotions"]["anger"]["steered"][1]["share"] = 1.2
    message = _failure(check_steer, bad)
    assert message.startswith("reports/steer/steer.json: column 'share': expect_column_values_to_be_between failed")
    assert "(id 'anger steered α=4.0'): 1.2" in message
    bad = _steer()
    bad["unmodified"]["judges"]["lexicon"]["share"]["fear"] = -0.1
    assert "column 'judge_lexicon': expect_column_values_to_be_between" in _failure(check_steer, bad)


def test_steer_missing_or_unplanned_alpha_fails():
    bad = _steer()
    del bad["emotions"]["anger"]["controls"][1]
    message = _failure(check_steer, bad)
    assert "every alpha once per emotion and control draw failed: anger control d0: α 0, expected 0, 4" in message
    bad = _steer()
    bad["emotions"]["anger"]["steered"][1]["alpha"] = 8
    message = _failure(check_steer, bad)
    assert "column 'alpha': expect_column_values_to_be_in_set" in message and "(id 'anger steered α=8.0')" in message
