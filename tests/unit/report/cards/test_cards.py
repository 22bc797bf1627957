"""Neuron cards: the one-pass running top-k and token counts against brute force over full
activations, the card ranking, and the card JSON / HTML content (tiny random Llama)."""

from __future__ import annotations

import re

import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.io.neurons_file import NoSelectionError, parse_neurons
from emoneurons.neurons import top_activations
from emoneurons.neurons.counting import added_special_prefix
from emoneurons.neurons.top_activations import empty_top_k, merge_top_k, neuron_activity, token_lift
from emoneurons.report.cards.cards_json import card_neurons, context_record, plan_cards
from emoneurons.report.cards.page import render_cards_html
from helpers.cards import CARD_DIALOGUES as DIALOGUES
from helpers.cards import card_counts, cards_record
from helpers.synthetic_inputs import neurons_json

NEURONS = [(0, 3), (0, 17), (2, 5), (3, 60), (3, 1)]


def brute_force(lm, dialogues, neurons):
    """Each dialogue alone (no padding): its own tokens' gate values [tokens, n] for the neurons."""
    prefix = added_special_prefix(lm.tokenizer)
    mlps = [layer.mlp for layer in lm.model.model.layers]  # the Llama's own modules, not the adapter's
    out = []
    for dialogue in dialogues:
        ids = prefix + lm.tokenizer.encode(dialogue, add_special_tokens=False)
        seen = {}
        handles = [mlps[layer].gate_proj.register_forward_hook(lambda m, a, o, layer=layer: seen.__setitem__(layer, o[0]))
                   for layer in {layer for layer, _ in neurons}]
        try:
            with torch.inference_mode():
                lm.model(input_ids=torch.tensor([ids]))
        finally:
            for h in handles:
                h.remove()
        gate = torch.stack([seen[layer][:, index] for layer, index in neurons], dim=1)
        out.append((ids, len(prefix), gate[len(prefix):]))
    return out


@pytest.mark.parametrize("batch_size, piece", [(1, 4096), (3, 4096), (16, 4096), (3, 2), (16, 3)])
def test_running_top_k_equals_brute_force_over_full_activations(tiny_llama, batch_size, piece, monkeypatch):
    """In any batches, and with the dialogues in pieces (each tokenized and batched alone, only
    the top dialogues' ids kept): the top-k, its dialogues' ids and the token counts of a brute-force pass."""
    monkeypatch.setattr(top_activations, "PIECE_DIALOGUES", piece)
    k = 3
    activity = neuron_activity(tiny_llama, DIALOGUES, NEURONS, k=k, batch_size=batch_size, max_length=1024)
    full = brute_force(tiny_llama, DIALOGUES, NEURONS)
    peaks = torch.stack([gate.max(dim=0).values for _, _, gate in full])  # [dialogues, n]
    where = torch.stack([gate.argmax(dim=0) for _, _, gate in full])
    expected = torch.sort(peaks, dim=0, descending=True, stable=True)
    assert torch.allclose(activity.top.values, expected.values[:k], atol=1e-5)
    assert torch.equal(activity.top.dialogue, expected.indices[:k])
    for rank in range(k):
        for c in range(len(NEURONS)):
            d = int(activity.top.dialogue[rank, c])
            ids, start, _ = full[d]
            assert int(activity.top.position[rank, c]) == start + int(where[d, c])
            assert activity.fed[d] == tuple(ids) and activity.start[d] == start
    assert set(activity.fed) == {int(d) for d in activity.top.dialogue.flatten()}  # only the top dialogues' ids
    # Per-token counts: every counted token, and how often each neuron's gate was > 0 on it.
    vocab = activity.token_counts.shape[0]
    counts = torch.zeros(vocab, dtype=torch.long)
    active = torch.zeros((vocab, len(NEURONS)), dtype=torch.long)
    for ids, start, gate in full:
        own = torch.tensor(ids[start:])
        counts.index_add_(0, own, torch.ones_like(own))
        active.index_add_(0, own, (gate > 0).long())
    assert torch.equal(activity.token_counts, counts)
    assert torch.equal(activity.token_active, active)
    assert activity.tokens == sum(len(ids) - start for ids, start, _ in full)


def test_more_k_than_dialogues_leaves_empty_rows():
    top = empty_top_k(4, 2)
    top = merge_top_k(top, torch.tensor([[1.0, -2.0], [3.0, 0.5]]), torch.tensor([7, 9]), torch.tensor([[1, 2], [3, 4]]))
    assert top.values[:2].tolist() == [[3.0, 0.5], [1.0, -2.0]]
    assert top.dialogue.tolist() == [[9, 9], [7, 7], [-1, -1], [-1, -1]]
    assert top.position[:2].tolist() == [[3, 4], [1, 2]]
    assert torch.isinf(top.values[2:]).all()


def test_merging_in_chunks_equals_one_sort():
    torch.manual_seed(0)
    values = torch.randn(40, 5)
    positions = torch.randint(0, 50, (40, 5))
    top = empty_top_k(6, 5)
    for start in range(0, 40, 7):
        top = merge_top_k(top, values[start : start + 7], torch.arange(start, min(start + 7, 40)), positions[start : start + 7])
    expected = values.topk(6, dim=0)
    assert torch.equal(top.values, expected.values)
    assert torch.equal(top.dialogue, expected.indices)
    assert torch.equal(top.position, positions.gather(0, expected.indices))


def test_token_lift_ranks_tokens_by_firing_rate_relative_to_the_neurons_rate():
    counts = torch.tensor([10, 4, 2, 0, 8])
    active = torch.tensor([[1], [4], [2], [0], [1]])  # the neuron fires on 8 of 24 tokens (rate 1/3)
    (lifts,) = token_lift(counts, active, min_count=3, top=5)
    assert [t.token for t in lifts] == [1, 4, 0]  # token 2 is seen only twice
    assert lifts[0].lift == pytest.approx(1.0 / (8 / 24))
    assert (lifts[0].count, lifts[0].active) == (4, 4)
    assert token_lift(counts, torch.zeros((5, 1), dtype=torch.long), min_count=1, top=3) == [[]]


def test_cards_rank_by_the_emotions_share_of_p_then_low_entropy():
    P, entropy = card_counts()
    P[1, 2] = P[3, 4] = torch.tensor([0.5, 0.1, 0.1, 0.1, 0.1, 0.1], dtype=torch.float64)  # anger's share 0.5
    P[0, 1] = torch.full((6,), 0.99, dtype=torch.float64)  # fires on nearly everything: share 1/6
    P[2, 9] = torch.tensor([0.3, 0.3, 0.1, 0.1, 0.1, 0.1], dtype=torch.float64)  # share 0.3
    entropy[1, 2], entropy[3, 4] = 0.5, 0.1
    chosen = card_neurons([[0, 1], [1, 2], [3, 4], [2, 9]], P, entropy, "anger", 3)
    assert chosen == [(3, 4), (1, 2), (2, 9)]
    assert card_neurons([[0, 1], [1, 2]], P, entropy, "disgust", 1) == [(0, 1)]


def test_plan_names_a_missing_selection():
    P, entropy = card_counts()
    with pytest.raises(NoSelectionError, match="no selection at ratio 0.02 "):
        plan_cards(parse_neurons(neurons_json({0.01: {}}, 4, 64)), 0.02, P, entropy, 2)


def test_context_window_highlights_the_token_and_stays_inside_the_dialogue(tiny_tokenizer):
    fed = [0, *tiny_tokenizer.encode("A: What a wonderful day. B: Oh no, that is terrible.", add_special_tokens=False)]
    position = 5
    record = context_record(tiny_tokenizer, fed, 1, position, 2)
    assert record["token"] == tiny_tokenizer.decode(fed[5:6])
    assert record["before"] == tiny_tokenizer.decode(fed[3:5]) and record["after"] == tiny_tokenizer.decode(fed[6:8])
    assert record["clipped_before"] and record["clipped_after"]
    whole = context_record(tiny_tokenizer, fed, 1, 2, 100)
    assert whole["before"] == tiny_tokenizer.decode(fed[1:2])  # never the BOS before the dialogue
    assert not whole["clipped_before"] and not whole["clipped_after"]


def test_activity_reports_what_max_length_cut(tiny_llama):
    # model.max_length's cut is counted and reported (cards.json "truncated"), never silent.
    tokenizer = tiny_llama.tokenizer
    prefix = len(added_special_prefix(tokenizer))
    own = [len(tokenizer(d, add_special_tokens=False)["input_ids"]) for d in DIALOGUES]
    max_length = prefix + sorted(own)[len(own) // 2]
    activity = neuron_activity(tiny_llama, DIALOGUES, [(0, 1)], k=1, batch_size=4, max_length=max_length)
    cuts = [prefix + n - max_length for n in own if prefix + n > max_length]
    assert cuts and all(len(fed) <= max_length for fed in activity.fed.values())
    assert activity.truncated.record() == {"max_length": max_length, "budget": max_length - prefix, "dialogues": len(cuts),
                                           "tokens_cut": sum(cuts), "longest_cut": max(cuts)}
    assert neuron_activity(tiny_llama, DIALOGUES, [(0, 1)], k=1, batch_size=4, max_length=1024).truncated.dialogues == 0


def test_card_json_holds_each_emotions_top_neurons_with_contexts_and_tokens(tiny_llama):
    record = cards_record(tiny_llama)
    assert record["emotions"]["disgust"] == {"selected": 0, "cards": []}
    for emotion in EMOTIONS:
        if emotion == "disgust":
            continue
        entry = record["emotions"][emotion]
        assert entry["selected"] == 3 and len(entry["cards"]) == 2
        for card in entry["cards"]:
            assert set(card["P"]) == set(EMOTIONS) and card["entropy"] >= 0
            assert len(card["contexts"]) == 3
            activations = [c["activation"] for c in card["contexts"]]
            assert activations == sorted(activations, reverse=True)
            for context in card["contexts"]:
                d = int(context["dialogue"][1:])
                assert context["label"] == EMOTIONS[d % 6]
                assert context["token"] and context["token"] in DIALOGUES[d]
                assert (context["before"] + context["token"] + context["after"]) in DIALOGUES[d]
            assert 1 <= len(card["top_tokens"]) <= 3
            assert all(t["active"] <= t["count"] for t in card["top_tokens"])


def test_card_page_has_a_section_per_emotion_a_card_per_neuron_and_says_when_none(tiny_llama):
    record = cards_record(tiny_llama)
    page = render_cards_html(record)
    for emotion in EMOTIONS:
        assert f'<section class="emotion" id="{emotion}"' in page
    assert page.count('<article class="card"') == sum(len(v["cards"]) for v in record["emotions"].values()) == 10
    assert "No disgust neurons were selected at top_rate 0.01" in page
    assert page.count("<mark>") == 10 * 3
    assert page.count('<svg class="pbars"') == 10
    assert "tiny &lt;random&gt; llama" in page and "<random>" not in page  # escaped
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    assert "<script" not in page


def test_built_cards_pass_the_cards_checks_and_a_neuron_past_the_layers_fails(tiny_llama):
    from emoneurons.io.result_suites import check_cards
    from emoneurons.io.suites import DataCheckError

    record = cards_record(tiny_llama)
    config = tiny_llama.model.config
    checked = check_cards(record, config.num_hidden_layers, config.intermediate_size, source="reports/cards/cards.json")
    assert checked and all(entry["passed"] for entry in checked)
    with pytest.raises(DataCheckError, match=r"column 'layer': expect_column_values_to_be_between failed"):
        check_cards(record, config.num_hidden_layers - 1, config.intermediate_size, source="reports/cards/cards.json")


@pytest.mark.parametrize("layer", [4, -1])  # -1 would otherwise read the last layer's neurons
def test_a_card_neuron_outside_the_model_is_hooks_one_line_before_any_hook(tiny_llama, layer):
    # Counted before and after: transformers leaves hooks of its own on the shared model once a test
    # has asked it for output_hidden_states; none of them is the search's.
    def hooks() -> int:
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in tiny_llama.model.modules())

    before = hooks()
    with pytest.raises(ValueError, match=rf"^layer {layer} is outside the model \(0..3\)$"):
        neuron_activity(tiny_llama, DIALOGUES, [(0, 1), (layer, 2)], k=1, batch_size=4, max_length=1024)
    assert hooks() == before
