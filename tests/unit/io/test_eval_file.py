"""io/eval_file.py: eval.json written in one key order, read typed and checked (one line naming
the file and the key), a condition looked up with its "not in this run" error, old files still read."""

from __future__ import annotations

import json

import pytest

from emoneurons.emotions import EMOTIONS
from emoneurons.io.eval_file import NoConditionError, eval_record, parse_eval, read_eval
from emoneurons.io.records import RecordError
from emoneurons.io.tables import DataError

ACCURACY = {**{e: 0.5 for e in EMOTIONS}, "overall": 0.5}
CI = {k: [0.25, 0.75] for k in ACCURACY}


def _condition(cid: str, kind: str, masked: str | None = None, ratio: float | None = None, layers: str | None = None) -> dict:
    return {"id": cid, "kind": kind, "masked": masked, "ratio": ratio, "layers": layers, "control": kind == "control",
            "draw": 0 if kind == "control" else None, "n_neurons": 0 if kind == "unmodified" else 7,
            "accuracy": ACCURACY, "ci95": CI, "confusion": [[1] * 6 for _ in EMOTIONS]}


CONDITIONS = [_condition("unmodified", "unmodified"), _condition("mask-fear-r0.01-all", "mask", "fear", 0.01, "all"),
              _condition("control-fear-r0.01-all-d0", "control", "fear", 0.01, "all")]
GRADED = [_condition("mask-fear-r0.01-all-s0.5", "mask", "fear", 0.01, "all") | {"scale": 0.5},
          _condition("matched-fear-r0.01-all-d0", "matched", "fear", 0.01, "all") | {"scale": 0.0, "draw": 0}]


def _record(**changed) -> dict:
    fields = dict(model="tiny", method="score", shots=1, shot_selection="random", shot_instruction="every",
                  label_format="bare", calibrate="train_prior", recalibrate=False, prompt_format="chat", engine="layers",
                  n_test=12, chance=0.1667, n_per_emotion={e: 2 for e in EMOTIONS}, baseline_above_chance=True,
                  tokens={"computed": 10, "naive": 30}, effects={"test_effect": "delta_masked"}, conditions=CONDITIONS)
    return eval_record(**(fields | changed))


def test_the_record_keeps_mask_evals_key_order_and_reads_back_typed():
    record = _record(truncated={"dialogues": 0}, keyword_control={"emotions": {}}, draw_null={"draws": 3},
                     dose_response={"scales": [0, 0.5]})
    assert list(record) == ["model", "method", "shots", "shot_selection", "shot_instruction", "label_format", "calibrate",
                            "recalibrate", "prompt_format", "engine", "n_test", "chance", "n_per_emotion",
                            "baseline_above_chance", "tokens", "effects", "conditions", "truncated", "keyword_control",
                            "draw_null", "dose_response"]
    assert not {"truncated", "keyword_control", "draw_null", "dose_response"} & set(_record())
    read = parse_eval(json.loads(json.dumps(record)))
    assert (read.model, read.shots, read.chance, read.recalibrate, read.tokens) == ("tiny", 1, 0.1667, False, record["tokens"])
    mask = read.condition("mask-fear-r0.01-all")
    assert (mask.kind, mask.masked, mask.ratio, mask.layers, mask.n_neurons) == ("mask", "fear", 0.01, "all", 7)
    assert read.unmodified().id == "unmodified"
    assert [c.id for c in read.find("control", "fear", 0.01 + 1e-15, "all")] == ["control-fear-r0.01-all-d0"]
    assert read.find("mask", "anger") == [] and read.find("mask", ratio=0.02) == []
    assert read.draw_null == {"draws": 3} and read.dose_response == {"scales": [0, 0.5]}
    assert read.null == "uniform" and read.control_kinds == ("uniform",)  # effects without `null`: a file from before


def test_matched_controls_and_graded_masks_read_back_and_find_keeps_them_apart():
    effects = {"test_effect": "delta_masked", "null": "matched",
               "controls": {"matched": {"key": "vs_matched"}, "uniform": {"key": "vs_control"}}}
    conditions = [CONDITIONS[0], CONDITIONS[1] | {"scale": 0.0, "vs_matched": {"verdict": "specific"}, "vs_control": {"verdict": "x"}},
                  CONDITIONS[2], *GRADED]
    read = parse_eval(json.loads(json.dumps(_record(effects=effects, conditions=conditions))))
    assert read.null == "matched" and read.control_kinds == ("matched", "uniform")
    mask = read.condition("mask-fear-r0.01-all")
    assert mask.versus("matched") == {"verdict": "specific"} and mask.versus("uniform") == {"verdict": "x"}
    assert [c.id for c in read.find("mask", "fear")] == ["mask-fear-r0.01-all"]  # plain masks only by default
    assert [c.id for c in read.find("mask", "fear", scale=0.5)] == ["mask-fear-r0.01-all-s0.5"]
    assert len(read.find("mask", scale=None)) == 2
    assert [(c.id, c.draw, c.scale) for c in read.find("matched")] == [("matched-fear-r0.01-all-d0", 0, 0.0)]


def test_a_condition_not_in_this_run_is_one_line_naming_the_file():
    with pytest.raises(NoConditionError, match=r"^reports/metrics/eval.json: condition 'mask-anger-r0.01-all' is not "
                                               r"in this run \(3 conditions; .*\)$"):
        parse_eval(_record()).condition("mask-anger-r0.01-all")


def test_a_file_from_before_the_settings_and_effects_still_reads():
    old = parse_eval({"conditions": [{"id": "unmodified", "kind": "unmodified", "accuracy": ACCURACY}]})
    assert old.model is None and old.effects is None and old.unmodified().ci95 == {} and old.unmodified().effect is None


@pytest.mark.parametrize(("change", "line"), [
    (lambda r: r.pop("conditions"), "eval.json: conditions is missing or empty"),
    (lambda r: r.update(conditions=[]), "eval.json: conditions is missing or empty"),
    (lambda r: r.update(conditions=r["conditions"][1:]), "eval.json: conditions: no condition of kind 'unmodified'"),
    (lambda r: r["conditions"][1].pop("accuracy"), "eval.json: conditions[1] (mask-fear-r0.01-all): accuracy is missing"),
    (lambda r: r["conditions"][1].update(kind="masked"),
     "eval.json: conditions[1] (mask-fear-r0.01-all): kind: 'masked': allowed: unmodified, mask, control, matched"),
    (lambda r: r["conditions"][1].update(scale="half"),
     "eval.json: conditions[1] (mask-fear-r0.01-all): scale: 'half' is not an integer or a number"),
    (lambda r: r.update(draw_null=[1]), "eval.json: draw_null: [1] is not an object"),
    (lambda r: r["conditions"][2].update(masked="joy"),
     "eval.json: conditions[2] (control-fear-r0.01-all-d0): masked: 'joy': allowed: " + ", ".join(EMOTIONS)),
    (lambda r: r["conditions"][1].update(ratio="0.01"), "eval.json: conditions[1] (mask-fear-r0.01-all): ratio: '0.01' is not an integer or a number"),
    (lambda r: r["conditions"][1].pop("layers"), "eval.json: conditions[1] (mask-fear-r0.01-all): layers is missing"),
    (lambda r: r["conditions"].__setitem__(0, "unmodified"), "eval.json: conditions[0]: 'unmodified' is not an object"),
    (lambda r: r.update(shots="1"), "eval.json: shots: '1' is not an integer"),
    (lambda r: r.update(recalibrate=0), "eval.json: recalibrate: 0 is not true or false"),
    (lambda r: r.update(n_test=True), "eval.json: n_test: True is not an integer"),
])
def test_a_broken_file_is_one_line_naming_the_file_and_the_key(tmp_path, change, line):
    record = json.loads(json.dumps(_record()))
    change(record)
    path = tmp_path / "reports" / "metrics" / "eval.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    with pytest.raises(RecordError) as info:
        read_eval(path)
    assert str(info.value) == f"{tmp_path}/reports/metrics/{line}"
    assert isinstance(info.value, DataError)  # the stages report it like every other bad input


def test_a_missing_file_is_the_tables_one_line(tmp_path):
    with pytest.raises(DataError, match=r"eval.json: file not found"):
        read_eval(tmp_path / "eval.json")
