"""The NRC Emotion Lexicon (nrc_lexicon.py), cue-word replacement (cue_removal.py), counting
without cue tokens (count.skip_cue_tokens) and the `nrc` judge."""

from __future__ import annotations

import re

import pytest
import torch

from emoneurons.backends.lexicon import LEXICON, lexicon_label
from emoneurons.backends.nrc_judge import NRCJudge, nrc_label
from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.io.tables import DataError
from emoneurons.model.architecture import gated_ffns
from emoneurons.neurons.counting import activation_counts
from emoneurons.params import ParamsError
from emoneurons.text.cue_removal import PLACEHOLDER, cue_spans, cue_token_positions, removal_record, replace_cues
from emoneurons.text.nrc_lexicon import NRCLexiconError, cue_words, load_lexicon, parse_lexicon
from emoneurons.text.prompt_format import added_special_prefix
from helpers.repo_params import params_with
from helpers.synthetic_inputs import COUNTING_DIALOGUES, COUNTING_LABELS

CUES = frozenset({"scared", "wonderful", "terrible", "revolting", "miss"})


def test_bundled_lexicon_holds_the_six_emotions_only():
    lexicon = load_lexicon()
    assert len(lexicon) == 3462  # nrclex 4.1.0: words with one of anger, disgust, fear, joy, sadness, surprise
    assert lexicon["frightened"] == {"fear", "surprise"}  # NRC also tags it `negative`: not an emotion here
    assert lexicon["happy"] == {"happiness"}  # NRC's joy; its anticipation, trust, positive are left out
    assert "abacus" not in lexicon  # trust only
    assert {e for emotions in lexicon.values() for e in emotions} == set(EMOTIONS)


def test_placeholder_is_no_cue_in_either_lexicon():
    assert PLACEHOLDER not in cue_words()
    assert all(not re.fullmatch(cue.replace("*", ".*"), PLACEHOLDER) for cues in LEXICON.values() for cue in cues)
    assert lexicon_label(f"I feel {PLACEHOLDER}.") is None and nrc_label(PLACEHOLDER, load_lexicon()) is None


def test_cue_words_are_replaced_case_insensitively_and_counted():
    text, n = replace_cues("A: I'm SO Scared!\nB: scaredy? No, scared-ish and miss.", CUES)
    # whole words only ("scaredy" stays), any case, a hyphen or apostrophe ends a word
    assert text == "A: I'm SO something!\nB: scaredy? No, something-ish and something."
    assert n == 3
    assert cue_spans("miss Miss", CUES) == [(0, 4), (5, 9)]


def test_a_dialogue_of_cue_words_only_is_kept_and_counted():
    replaced, record = removal_record(["Scared! Terrible.", "A: Hello there.", ""], CUES)
    assert replaced == ["something! something.", "A: Hello there.", ""]  # none dropped, same order
    assert record["dialogues"] == 3 and record["with_cues"] == 1 and record["cue_words"] == 2
    assert record["no_other_word"] == 1
    assert record["dialogues_by_cue_words"] == {"0": 2, "2": 1} and record["per_dialogue"] == [2, 0, 0]


def test_cue_token_positions_overlap_rule():
    # tokens: "I", " sc", "ared", "!", "" (a special token's empty span), " ok"
    offsets = [(0, 1), (1, 4), (4, 8), (8, 9), (0, 0), (9, 12)]
    assert cue_token_positions(offsets, [(2, 8)]) == [1, 2]  # " sc" holds the word's start: a cue token
    assert cue_token_positions(offsets, []) == []


def test_lexicon_file_errors_are_one_line(tmp_path):
    with pytest.raises(NRCLexiconError, match="must be a mapping"):
        parse_lexicon(["anger"], "x.json")
    with pytest.raises(NRCLexiconError, match="no word tagged"):
        parse_lexicon({"abacus": ["trust"]}, "x.json")
    bad = tmp_path / "nrc.json"
    bad.write_text("{not json")
    with pytest.raises(NRCLexiconError, match="not a JSON file"):
        load_lexicon(str(bad))
    with pytest.raises(DataError, match=r"judge 'nrc' \(backend nrc\): .*not found"):
        NRCJudge("nrc", str(tmp_path / "missing.json"))


def test_nrc_judge_labels_by_most_cue_words():
    lexicon = parse_lexicon({"angry": ["anger", "negative"], "furious": ["anger"], "happy": ["joy"], "odd": ["surprise"]}, "t")
    assert nrc_label("I am ANGRY, furious, and happy.", lexicon) == "anger"
    assert nrc_label("happy but odd", lexicon) is None  # a tie abstains
    assert nrc_label("nothing here", lexicon) is None
    assert NRCJudge("nrc").label(["I am so happy and glad!", "..."]) == ["happiness", None]


def test_params_refuse_a_non_boolean_switch():
    with pytest.raises(ParamsError, match=r"count\.skip_cue_tokens"):
        params_with({"count": {"skip_cue_tokens": "sometimes"}})
    with pytest.raises(ParamsError, match=r"eval\.keyword_control"):
        params_with({"eval": {"keyword_control": "sometimes"}})
    assert params_with({"filter": {"judges": [{"name": "nrc", "backend": "nrc"}]}}).filter.judges[0].backend == "nrc"


@torch.no_grad()
def plain_counts_without_cues(lm, dialogues, emotions, cues):
    """One dialogue at a time, no padding: a token is a cue token when the characters it decodes
    to (found by decoding growing prefixes, not the tokenizer's offsets) overlap a cue word."""
    tok = lm.tokenizer
    prefix = added_special_prefix(tok)  # what count feeds before the dialogue, never counted
    ffns = gated_ffns(lm.model)
    f = torch.zeros(len(ffns), ffns[0].n_neurons, len(EMOTIONS), dtype=torch.int64)
    T = torch.zeros(len(EMOTIONS), dtype=torch.int64)
    inputs = {}
    handles = [ffn.mlp.register_forward_pre_hook(lambda m, a, layer=layer: inputs.__setitem__(layer, a[0][0]))
               for layer, ffn in enumerate(ffns)]
    try:
        for dialogue, emotion in zip(dialogues, emotions):
            own = tok(dialogue, add_special_tokens=False)["input_ids"]
            words = [m.span() for m in re.finditer(r"[A-Za-z]+", dialogue) if m.group().lower() in cues]
            counted = []
            for i in range(len(own)):
                start, end = len(tok.decode(own[:i])), len(tok.decode(own[: i + 1]))
                if not any(a < end and start < b for a, b in words):
                    counted.append(len(prefix) + i)
            lm.model(torch.tensor([[*prefix, *own]]))
            for layer, ffn in enumerate(ffns):
                f[layer, :, EMOTION_INDEX[emotion]] += (ffn.gate(inputs[layer][counted]) > 0).sum(0)
            T[EMOTION_INDEX[emotion]] += len(counted)
    finally:
        for handle in handles:
            handle.remove()
    return f, T


def test_counts_without_cue_tokens_equal_a_plain_reference(tiny_llama):
    f_all, T_all, _ = activation_counts(tiny_llama, COUNTING_DIALOGUES, COUNTING_LABELS, batch_size=3, max_length=512, max_padding=1.0, text="dialogue", positions="all", activation="gate")
    f, T, _ = activation_counts(tiny_llama, COUNTING_DIALOGUES, COUNTING_LABELS, batch_size=3, max_length=512, max_padding=1.0, skip_cues=CUES, text="dialogue", positions="all", activation="gate")
    f_ref, T_ref = plain_counts_without_cues(tiny_llama, COUNTING_DIALOGUES, COUNTING_LABELS, CUES)
    assert torch.equal(T, T_ref) and torch.equal(f, f_ref)
    assert (T < T_all).sum() >= 4  # the cue words' tokens are really left out (fear, happiness, ... have cues)
    assert torch.equal(T[EMOTION_INDEX["surprise"]], T_all[EMOTION_INDEX["surprise"]])  # no cue in those dialogues


def test_filter_reports_each_judges_kappa_with_the_intended_emotion():
    import polars as pl

    from emoneurons.dataset.filtering import agreement_filter

    df = pl.DataFrame({"theme": ["anger", "anger", "fear", "fear"], "dialogue": ["a", "b", "c", "d"]})
    judged = {"nrc": ["anger", "fear", "fear", None], "lexicon": ["anger", "anger", "fear", "fear"]}
    _, report = agreement_filter(df, judged, 1)
    # by hand, nrc over its 3 labelled dialogues: observed 2/3; marginals nrc (1/3, 2/3), intended (2/3, 1/3):
    # expected 4/9; kappa (2/3 - 4/9) / (1 - 4/9) = 0.4. lexicon agrees on all four: kappa 1.
    assert report["kappa"]["cohen_vs_intended"] == {"nrc": 0.4, "lexicon": 1.0}
    assert report["kappa"]["cohen"]["nrc-lexicon"] == 0.4  # the same pairs: lexicon equals the intended here
