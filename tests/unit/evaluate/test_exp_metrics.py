"""headline.json's and summary.json's numbers: the four `dvc exp show` lists, from headline.json's keys."""

import pytest

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.conditions import control_id, mask_id
from emoneurons.evaluate.exp_metrics import exp_summary, headline
from emoneurons.io.neurons_file import parse_neurons

NEURONS = {"top_rate": 0.01, "layers": 2, "neurons_per_layer": 64,
           "ratios": {"0.01": {"selected": 42, "neurons": {}}, "0.02": {"selected": 80, "neurons": {}}}}


def test_summary_averages_the_drops_over_the_six_emotions():
    headline = {"accuracy_unmodified": 0.7}
    headline |= {f"drop_{e}": 0.1 * i for i, e in enumerate(EMOTIONS)}
    headline |= {f"control_drop_{e}": -0.05 if i % 2 else 0.05 for i, e in enumerate(EMOTIONS)}
    summary = exp_summary(headline, parse_neurons(NEURONS), 0.02)
    assert list(summary) == ["accuracy", "drop", "control_drop", "neurons"]
    assert summary["accuracy"] == 0.7
    assert summary["drop"] == pytest.approx(0.25)  # (0 + .1 + .2 + .3 + .4 + .5) / 6
    assert summary["control_drop"] == pytest.approx(0.0)
    assert summary["neurons"] == 80


def test_summary_without_controls_has_no_control_column():
    headline = {"accuracy_unmodified": 0.5, **{f"drop_{e}": 0.0 for e in EMOTIONS}}
    assert exp_summary(headline, parse_neurons(NEURONS), 0.01) == {"accuracy": 0.5, "drop": 0.0, "neurons": 42}


@pytest.mark.parametrize("kind", ["matched", "uniform"])
def test_headline_control_drop_is_the_verdict_null_kinds(kind):
    # Only the first kind of eval.controls may have been run (the default: matched alone).
    other = {"matched": "uniform", "uniform": "matched"}[kind]
    base = dict.fromkeys(EMOTIONS, 0.5) | {"overall": 0.5}
    conditions = {"unmodified": {"accuracy": base}}
    for e in EMOTIONS:
        cid = mask_id(e, 0.01, "all")
        conditions[cid] = {"accuracy": {e: 0.25}}
        conditions[control_id(cid, 0, kind)] = {"accuracy": {e: 0.375}}
        conditions[control_id(cid, 1, kind)] = {"accuracy": {e: 0.5}}
        conditions |= {control_id(cid, d, other): {"accuracy": {e: 0.0}} for d in (0, 1)}  # a wrong kind's drop: 0.5
    numbers = headline(conditions, 0.01, 2, kind)
    assert all(numbers[f"control_drop_{e}"] == pytest.approx(0.0625) for e in EMOTIONS)
    assert all(numbers[f"drop_{e}"] == pytest.approx(0.25) for e in EMOTIONS)
