"""Every family docs/USING.md names, through count, masking and the mask-eval engine, each against a
naive reference built from the model's own forward: tiny random models built in-process (no
download), the in-process tokenizer of tests/helpers/tiny_models.py."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.classify import MaskedClassifier
from emoneurons.model.architecture import FAMILIES, UnsupportedModelError, gated_ffns
from emoneurons.model.loading import LoadedModel
from emoneurons.neurons import reference
from emoneurons.neurons.counting import activation_counts
from emoneurons.neurons.masking import mask_neurons
from emoneurons.text.chat_prompt import dialogue_ids, label_ids
from emoneurons.text.classification_prompt import classification_prompt
from helpers.repo_params import params_yaml
from helpers.stage_runner import run_stage_script
from helpers.tiny_models import FAMILY_FFN as FFN
from helpers.tiny_models import FAMILY_HIDDEN as HIDDEN
from helpers.tiny_models import FAMILY_LAYERS as LAYERS
from helpers.tiny_models import build_family

DIALOGUES = [
    "A: I can't believe this happened!\nB: Oh no, that is terrible.",
    "A: What a wonderful day.",
    "A: That smell is revolting.\nB: I'm scared of the dark.\nA: I miss her so much.",
]
LABELS = ["anger", "happiness", "disgust"]
SHOTS = [("A: What a wonderful day.", "happiness")]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_lm(request, tiny_tokenizer):
    return build_family(tiny_tokenizer, request.param)


def _gate_and_product(mlp, x):
    """The FFN's gate pre-activation and down_proj input, written out per family here (not the adapter)."""
    if hasattr(mlp, "gate_up_proj"):  # Phi-3: gate first, then up
        gate, up = mlp.gate_up_proj(x).chunk(2, dim=-1)
        return gate, mlp.activation_fn(gate) * up
    gate = mlp.gate_proj(x)
    return gate, mlp.act_fn(gate) * mlp.up_proj(x)


def naive_counts(lm, prompt, activation):
    """The library's one-page reference (neurons/reference.py): one dialogue at a time, the classification prompt's prefix first."""
    own = [dialogue_ids(lm.tokenizer, d) for d in DIALOGUES]
    return reference.count_activations(lm.model, own, LABELS, prefix=prompt.prefix, activation=activation)


def brute_force_scores(lm, prompt, dialogues):
    """Each label's summed log-likelihood from one full forward of the model per (dialogue, label) (neurons/reference.py)."""
    contexts = [prompt.ids(dialogue_ids(lm.tokenizer, d)) for d in dialogues]
    return reference.predict(lm.model, contexts, label_ids(lm.tokenizer, "bare"))[0]


@torch.inference_mode()
def test_adapter_reads_gate_and_product_as_the_family_writes_them(family_lm):
    """The reference and the fast counting both read the FFN through the adapter: checked here
    against each family's own modules, written out above."""
    x = torch.randn(5, HIDDEN)
    for layer, ffn in zip(family_lm.model.model.layers, gated_ffns(family_lm.model)):
        gate, product = _gate_and_product(layer.mlp, x)
        assert torch.equal(ffn.gate(x), gate) and torch.equal(ffn.product(x), product)
        torch.testing.assert_close(layer.mlp.down_proj(product), layer.mlp(x))


@torch.inference_mode()
def test_counts_equal_naive_reference(family_lm):
    prompt = classification_prompt(family_lm.tokenizer, prompt_format="chat")
    for activation in ("gate", "product"):
        f_ref, T_ref = naive_counts(family_lm, prompt, activation)
        for side in ("left", "right"):  # one padded batch of all three dialogues
            tokenizer = copy.deepcopy(family_lm.tokenizer)
            tokenizer.padding_side = side
            lm = LoadedModel(model=family_lm.model, tokenizer=tokenizer, name=family_lm.name)
            f, T, _ = activation_counts(lm, DIALOGUES, LABELS, text="prompt", activation=activation, batch_size=3, max_length=1024, max_padding=1.0, prompt_format="chat", positions="all")
            assert torch.equal(T, T_ref) and torch.equal(f, f_ref), (activation, side)
        assert 0 < int(f.sum()) < int(T.sum()) * LAYERS * FFN


@torch.inference_mode()
def test_masking_equals_zeroed_down_proj_columns(family_lm):
    neurons = {0: torch.tensor([0, 5, 9]), 2: torch.tensor([2, FFN - 1])}
    ids = torch.tensor([family_lm.tokenizer.encode(DIALOGUES[0])])
    with mask_neurons(family_lm.model, neurons):
        hooked = family_lm.model(ids).logits
    zeroed = copy.deepcopy(family_lm.model)
    for layer, index in neurons.items():
        zeroed.model.layers[layer].mlp.down_proj.weight[:, index] = 0.0
    torch.testing.assert_close(hooked, zeroed(ids).logits, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(hooked, family_lm.model(ids).logits, atol=1e-4)


@torch.inference_mode()
def test_engine_equals_model_forward_masked_and_unmodified(family_lm):
    prompt = classification_prompt(family_lm.tokenizer, SHOTS, prompt_format="chat")
    top = {2: torch.tensor([1, 7, 30])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every family here runs the layered engine, no fallback
        engine = MaskedClassifier(family_lm, prompt, DIALOGUES, "score", batch_size=2, boundaries=[2], max_new_tokens=8, label_format="bare", recalibrate=False)
    assert engine.engine == "layered"
    unmodified = engine.classify()
    reused = engine.classify(top)
    torch.testing.assert_close(unmodified.scores, brute_force_scores(family_lm, prompt, DIALOGUES), atol=1e-4, rtol=1e-4)
    with mask_neurons(family_lm.model, top):
        expected = brute_force_scores(family_lm, prompt, DIALOGUES)
    torch.testing.assert_close(reused.scores, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(reused.scores, unmodified.scores, atol=1e-3)
    assert reused.tokens_computed < unmodified.tokens_computed  # layers 0-1 reused


def _gemma1(tokenizer) -> LoadedModel:
    """Gemma (1): a gated FFN, but not a family the engine is tested on."""
    from transformers import GemmaConfig, GemmaForCausalLM

    torch.manual_seed(0)
    config = GemmaConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None, eos_token_id=None, initializer_range=0.2)
    model = GemmaForCausalLM(config).eval()
    model.requires_grad_(False)
    return LoadedModel(model=model, tokenizer=tokenizer, name="tiny-random-gemma")


@torch.inference_mode()
def test_a_model_the_engine_cannot_serve_takes_the_exact_plain_path_and_says_so_once(tiny_tokenizer):
    lm, reason = _gemma1(tiny_tokenizer), "not one of the families"
    prompt = classification_prompt(lm.tokenizer, SHOTS, prompt_format="chat")
    top = {2: torch.tensor([1, 7, 30])}
    with pytest.warns(UserWarning, match=reason) as said:
        engine = MaskedClassifier(lm, prompt, DIALOGUES, "score", batch_size=2, boundaries=[2], max_new_tokens=8, label_format="bare", recalibrate=False)
        unmodified, masked = engine.classify(), engine.classify(top)
    assert len(said) == 1 and "exact, slower" in str(said[0].message)
    assert engine.engine == "plain"
    torch.testing.assert_close(unmodified.scores, brute_force_scores(lm, prompt, DIALOGUES), atol=1e-4, rtol=1e-4)
    with mask_neurons(lm.model, top):
        expected = brute_force_scores(lm, prompt, DIALOGUES)
    torch.testing.assert_close(masked.scores, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(masked.scores, unmodified.scores, atol=1e-3)
    assert masked.tokens_computed == unmodified.tokens_computed  # no layer reuse on the plain path


# Families whose attention slides, each with windows that bind: 8 (shorter than the prompt prefix,
# so some dialogue tokens see none of it) and one between the prefix's length and the full prompt's.
SLIDING = {
    "gemma3_text": {},  # local layers 0 and 2, global layer 1
    "mistral": {},  # every layer
    "qwen2": {"use_sliding_window": True, "max_window_layers": 1},  # layers 1 and 2
    "gemma2": {"layer_types": ["sliding_attention", "full_attention", "sliding_attention"]},  # the concatenating path
}


@pytest.mark.parametrize("family", sorted(SLIDING))
@pytest.mark.parametrize("shared_attention", [None, False])
@torch.inference_mode()
def test_engine_serves_sliding_window_layers_exactly(tiny_tokenizer, family, shared_attention):
    """Prompts longer than the window: the layered engine (shared-prefix attention, and the
    concatenated keys/values with explicit masks) equals the model's own forward, masked with layer
    reuse and unmodified, and its greedy answers equal the model's own generate."""
    prompt = classification_prompt(tiny_tokenizer, SHOTS, prompt_format="chat")
    shortest = min(len(prompt.prefix) + len(dialogue_ids(tiny_tokenizer, d)) for d in DIALOGUES)
    assert 8 < len(prompt.prefix) < shortest - 4
    top = {2: torch.tensor([1, 7, 30])}
    for window in (8, len(prompt.prefix) + 4):
        lm = build_family(tiny_tokenizer, family, sliding_window=window, **SLIDING[family])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback to the plain path
            engine = MaskedClassifier(lm, prompt, DIALOGUES, "score", batch_size=2, boundaries=[2], shared_attention=shared_attention, max_new_tokens=8, label_format="bare", recalibrate=False)
            generator = MaskedClassifier(lm, prompt, DIALOGUES, "generate", batch_size=2, max_new_tokens=4,
                                         shared_attention=shared_attention, label_format="bare", recalibrate=False)
        assert engine.engine == generator.engine == "layered"
        unmodified, reused = engine.classify(), engine.classify(top)
        torch.testing.assert_close(unmodified.scores, brute_force_scores(lm, prompt, DIALOGUES), atol=1e-4, rtol=1e-4)
        with mask_neurons(lm.model, top):
            expected = brute_force_scores(lm, prompt, DIALOGUES)
        torch.testing.assert_close(reused.scores, expected, atol=1e-4, rtol=1e-4)
        assert reused.tokens_computed < unmodified.tokens_computed  # layers 0-1 reused
        answers = generator.classify().answers
        for row, dialogue in enumerate(DIALOGUES):
            context = torch.tensor([prompt.ids(dialogue_ids(tiny_tokenizer, dialogue))])
            own = lm.model.generate(context, attention_mask=torch.ones_like(context), max_new_tokens=4, do_sample=False,
                                    pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=None, min_new_tokens=4)
            assert answers[row] == tiny_tokenizer.decode(own[0, context.shape[1]:], skip_special_tokens=True)


def test_the_window_changes_the_scores_so_the_engine_must_honour_it(tiny_tokenizer):
    """The same weights with a window wider than every prompt score differently from the sliding
    model: the test above would catch an engine that ignored the window."""
    prompt = classification_prompt(tiny_tokenizer, SHOTS, prompt_format="chat")
    for family in sorted(SLIDING):
        wide, narrow = (build_family(tiny_tokenizer, family, sliding_window=w, **SLIDING[family]) for w in (512, 8))
        assert torch.equal(wide.model.lm_head.weight, narrow.model.lm_head.weight)
        with torch.inference_mode():
            assert not torch.allclose(brute_force_scores(wide, prompt, DIALOGUES), brute_force_scores(narrow, prompt, DIALOGUES),
                                      atol=1e-3), family


def test_model_without_gated_ffn_is_one_line_naming_what_is_allowed():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=32))
    with pytest.raises(UnsupportedModelError) as info:
        gated_ffns(model)
    message = str(info.value)
    assert "\n" not in message and message.startswith("GPT2LMHeadModel: ")
    assert "allowed: Llama (SmolLM), Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3, Phi-3" in message


def test_count_stage_names_model_id_for_a_model_without_gated_ffn(tmp_path, tiny_tokenizer):

    import polars as pl
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tiny_tokenizer), n_positions=64, bos_token_id=None, eos_token_id=None)
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    tiny_tokenizer.save_pretrained(tmp_path / "gpt2")
    (tmp_path / "data" / "split").mkdir(parents=True)
    pl.DataFrame({"theme": list(EMOTIONS), "dialogue": [f"A: {e}." for e in EMOTIONS]}).write_parquet(tmp_path / "data/split/train.parquet")
    (tmp_path / "params.yaml").write_text(params_yaml({"model": {"id": str(tmp_path / "gpt2")}}))
    result = run_stage_script("count", cwd=tmp_path)
    assert result.returncode == 1
    # transformers' own loading progress may come first; the stage's error is one line, no traceback.
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and result.stderr.count("model.id") == 1, result.stderr
    assert last.startswith(f"params.yaml: model.id '{tmp_path / 'gpt2'}': GPT2LMHeadModel: ")
    assert "allowed: Llama (SmolLM)" in last
    assert not (tmp_path / "data" / "counts").exists()


@torch.inference_mode()
def test_plain_path_equals_the_layered_engine_for_score_and_generate(tiny_llama, monkeypatch):
    """The same model through both paths (the fallback forced, as fault injection): equal scores
    (masked and unmodified) and equal greedy answers."""
    # An untied random output head: with tied embeddings a random model only repeats the last token.
    model = copy.deepcopy(tiny_llama.model)
    model.lm_head.weight = torch.nn.Parameter(torch.randn(model.lm_head.weight.shape, generator=torch.Generator().manual_seed(1)))
    lm = LoadedModel(model=model, tokenizer=tiny_llama.tokenizer, name="tiny-random-llama-untied")
    prompt = classification_prompt(lm.tokenizer, SHOTS, prompt_format="chat")
    top = {3: torch.tensor([4, 11])}
    layered = [MaskedClassifier(lm, prompt, DIALOGUES, method, batch_size=2, max_new_tokens=4, label_format="bare", recalibrate=False) for method in ("score", "generate")]
    monkeypatch.setattr(MaskedClassifier, "_fallback_reason", lambda self, rows: "forced for the test")
    with pytest.warns(UserWarning, match="forced for the test"):
        plain = [MaskedClassifier(lm, prompt, DIALOGUES, method, batch_size=2, max_new_tokens=4, label_format="bare", recalibrate=False) for method in ("score", "generate")]
    assert [e.engine for e in layered] == ["layered"] * 2 and [e.engine for e in plain] == ["plain"] * 2
    for mask in (None, top):
        torch.testing.assert_close(plain[0].classify(mask).scores, layered[0].classify(mask).scores, atol=1e-4, rtol=1e-4)
        answers = plain[1].classify(mask).answers
        assert answers == layered[1].classify(mask).answers
        # Several different tokens per answer: each decoding step's argmax is compared, not one repeated token.
        assert all(len(set(lm.tokenizer.encode(answer, add_special_tokens=False))) > 2 for answer in answers)
