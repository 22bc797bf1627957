"""The report's cards link and steering section, from hand-built cards.json / steer.json."""

from __future__ import annotations

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.steering import plan_steering, steering_record
from emoneurons.io.cards_file import parse_cards
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.io.steer_file import parse_steer
from emoneurons.report.document.blocks import Image, Table
from emoneurons.report.document.html import inline, render_html
from emoneurons.report.document.markdown import render_markdown
from emoneurons.report.steering.section import beyond_ablation_blocks
from helpers.repo_params import section
from helpers.synthetic_inputs import neurons_json


def _steer_json() -> dict:
    selected = {e: [[1, i], [3, 10 + i]] for i, e in enumerate(EMOTIONS)}
    selected["fear"] = []
    plan = plan_steering(parse_neurons(neurons_json({0.01: selected}, 4, 64)), 0.01, section("steer", alphas=(0, 8), control_draws=1))
    n = 2 * (1 + len(plan))
    predicted = ["happiness"] * n
    predicted[2 * 2 : 2 * 3] = ["anger", "happiness"]  # anger at alpha 8: one of two replies
    record = steering_record(["a", "b"], plan, predicted, torch.zeros(n, 6), ["r"] * n, {e: len(v) for e, v in selected.items()})
    return {"model": "tiny", "top_rate": 0.01, "alphas": [0, 8], "max_new_tokens": 4, "control_draws": 1, "prompts": ["a", "b"],
            "classifier": {"method": "score", "shots": 1, "label_format": "space", "calibrate": "train_prior"}, **record}


def _cards_json() -> dict:
    card = {"layer": 1, "index": 2}
    emotions = {e: {"selected": 2, "cards": [card, card]} for e in EMOTIONS}
    emotions["fear"] = {"selected": 0, "cards": []}
    return {"top_neurons": 2, "contexts": 3, "emotions": emotions}


def test_section_links_the_cards_and_tabulates_each_emotion_and_alpha(tmp_path):
    blocks = beyond_ablation_blocks(parse_cards(_cards_json()), parse_steer(_steer_json()))
    markdown = render_markdown(blocks)
    assert "[Neuron cards](cards/index.html): 10 cards" in markdown and "no cards, for fear" in markdown
    table = next(b for b in blocks if isinstance(b, Table))
    assert [(row[0], row[2]) for row in table.rows] == [(e, a) for e in EMOTIONS if e != "fear" for a in ("0", "8")]
    anger8 = next(row for row in table.rows if row[:3] == ("anger", "2", "8"))
    assert anger8[3] == "+50.0" and anger8[4] == "+0.0"  # share shift (pp), control
    assert any(isinstance(b, Image) and b.name == "steering" for b in blocks)
    page = render_html(blocks, tmp_path, "t")
    assert '<a href="cards/index.html">Neuron cards</a>' in page


def test_links_only_to_relative_paths():
    assert inline("see [cards](cards/index.html#anger)") == 'see <a href="cards/index.html#anger">cards</a>'
    assert "<a" not in inline("[x](https://example.com)") and "<a" not in inline('[x](a" onclick="b)')


def test_each_judge_gets_a_share_shift_column_and_its_control():
    steer = _steer_json()
    plan = plan_steering(parse_neurons(neurons_json({0.01: {"anger": [[1, 0]]}}, 4, 64)), 0.01,
                         section("steer", alphas=(0, 8), control_draws=1))
    n = 2 * (1 + len(plan))
    lexicon = ["fear"] * n
    lexicon[2 * 2 : 2 * 3] = ["anger", "anger"]  # anger at alpha 8: both replies, for the judge
    record = steering_record(["a", "b"], plan, ["happiness"] * n, None, ["r"] * n, {"anger": 1}, {"lexicon": lexicon})
    steer["emotions"] = record["emotions"]
    steer["judges"] = [{"name": "lexicon", "backend": "lexicon"}]
    blocks = beyond_ablation_blocks(parse_cards(_cards_json()), parse_steer(steer))
    table = next(b for b in blocks if isinstance(b, Table))
    assert table.headers[-2:] == ("judge lexicon (pp)", "judge lexicon control (pp)")
    assert [row[-2:] for row in table.rows] == [("+0.0", "+0.0"), ("+100.0", "+0.0")]
    assert "The filter's judges (`lexicon`) label the same replies" in render_markdown(blocks)


def test_a_shift_whose_replies_broke_reads_text_broke_beside_its_coherence():
    from emoneurons.evaluate.coherence import CoherenceRule, ReplyCoherence

    steer = _steer_json()
    selected = {e: [[1, i], [3, 10 + i]] for i, e in enumerate(EMOTIONS)}
    selected["fear"] = []
    plan = plan_steering(parse_neurons(neurons_json({0.01: selected}, 4, 64)), 0.01,
                         section("steer", alphas=(0, 8), control_draws=1))
    n = 2 * (1 + len(plan))
    predicted = ["happiness"] * n
    predicted[2 * 2 : 2 * 3] = ["anger", "happiness"]
    logp, repeated = [-1.0] * n, [0.0] * n
    logp[2 * 2 : 2 * 3] = [-4.0, None]  # anger at alpha 8: 3 nats per token below, one reply empty
    repeated[2 * 4 : 2 * 5] = [0.5, 0.3]  # anger's control at alpha 8: repeats (0.4 above unmodified)
    record = steering_record(["a", "b"], plan, predicted, torch.zeros(n, 6), ["r"] * n, {e: len(v) for e, v in selected.items()},
                             coherence=ReplyCoherence(logp, repeated), rule=CoherenceRule(2, 2.0, 0.2))
    steer |= record
    blocks = beyond_ablation_blocks(parse_cards(_cards_json()), parse_steer(steer))
    table = next(b for b in blocks if isinstance(b, Table))
    assert table.headers[-4:] == ("Δ log-lik/token", "control Δ log-lik/token", "Δ repeated 2-grams (pp)", "control Δ repeated (pp)")
    anger8 = next(row for row in table.rows if row[:3] == ("anger", "2", "8"))
    assert anger8[3] == "+50.0 (text broke)" and anger8[4] == "+0.0 (text broke)"
    assert anger8[-4:] == ("-3.00", "+0.00", "+0.0", "+40.0")
    anger0 = next(row for row in table.rows if row[:3] == ("anger", "2", "0"))
    assert anger0[3:5] == ("+0.0", "+0.0") and anger0[-4:] == ("+0.00", "+0.00", "+0.0", "+0.0")
    assert sum("(text broke)" in cell for row in table.rows for cell in row) == 2
    markdown = render_markdown(blocks)
    assert "reads **(text broke)** when its replies' log-likelihood per token is more than 2 below" in markdown
    assert "repeated 2-gram share more than 20 pp above it" in markdown
