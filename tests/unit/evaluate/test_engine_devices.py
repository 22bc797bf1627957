"""mask-eval's engine on a model spread over two devices (`model.device: auto`: accelerate's device
map puts each layer on one of a node's GPUs), proved on the CPU: the first layers on `cpu`, the
rest and the head on `meta`, two devices torch keeps apart (an index, mask or operand made on the
wrong one raises, as cuda:0 against cuda:1 does). A meta layer computes no values, so the tests ask
that every pass reach and leave every layer and the head without a device error, and that the
label scores come out on the head's device. And the shared prefix travels inside the engine's
key/value store, which accelerate's per-layer device hooks do not copy."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch

from emoneurons.evaluate.classify import MaskedClassifier
from emoneurons.evaluate.layer_runner import KVStore
from emoneurons.evaluate.plain_classify import plain_label_scores
from emoneurons.model.architecture import decoder_layers
from emoneurons.model.loading import LoadedModel
from emoneurons.neurons.masking import mask_neurons
from emoneurons.text.chat_prompt import dialogue_ids, label_ids
from emoneurons.text.classification_prompt import classification_prompt

DIALOGUES = [
    "A: I can't believe this happened!\nB: Oh no, that is terrible.",
    "A: What a wonderful day.",
    "A: That smell is revolting.\nB: I'm scared of the dark.",
]
SHOTS = [("A: What a wonderful day.", "happiness")]
ON_CPU = 2  # layers 0, 1 on cpu; 2, 3, the final norm and lm_head on meta

pytestmark = pytest.mark.usefixtures("one_thread")


def _split_model(tokenizer, hooks: bool) -> tuple[LoadedModel, list[str]]:
    """A 4-layer Llama (untied head: the head moves alone) spread over cpu and meta; `hooks`: with
    accelerate's AlignDevicesHook on each placed module, as a device map installs them. Returns the
    model and a log of each module call (its name)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=False,
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config).eval().requires_grad_(False)
    placed = {f"model.layers.{i}": ("cpu" if i < ON_CPU else "meta") for i in range(4)}
    placed |= {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "meta", "lm_head": "meta"}
    calls: list[str] = []
    for name, device in placed.items():
        module = model.get_submodule(name)
        module.to(device)
        if hooks:
            from accelerate.hooks import AlignDevicesHook, add_hook_to_module

            add_hook_to_module(module, AlignDevicesHook(execution_device=device, io_same_device=False))
        module.register_forward_hook(lambda module, args, out, name=name: calls.append(name))
    return LoadedModel(model=model, tokenizer=tokenizer, name="split-tiny-llama"), calls


def _run(engine: MaskedClassifier, start: int, keep) -> list[tuple[list[int], torch.Tensor]]:
    """One pass over every batch from layer `start` (what `classify` does before the scores are
    copied to the host, which a meta tensor cannot be)."""
    on_device: list = []
    with torch.inference_mode():
        engine._run_layered(engine.batches, start, keep, on_device, [""] * engine.n_rows, [False] * engine.n_rows, None)
    return on_device


@pytest.mark.parametrize("hooks", [False, True], ids=["engine-moves", "accelerate-hooks"])
@pytest.mark.parametrize("shared_attention", [True, False], ids=["shared-prefix", "concatenated"])
def test_engine_runs_a_model_whose_layers_sit_on_two_devices(tiny_tokenizer, hooks, shared_attention):
    lm, calls = _split_model(tiny_tokenizer, hooks)
    prompt = classification_prompt(tiny_tokenizer, SHOTS, prompt_format="chat")
    assert any(len(ids) > 1 for ids in label_ids(tiny_tokenizer, "bare"))  # the continuation pass runs too
    engine = MaskedClassifier(lm, prompt, DIALOGUES, "score", batch_size=2, boundaries=[1, 3],
                              shared_attention=shared_attention, reference=DIALOGUES[:1], max_new_tokens=8, label_format="bare", recalibrate=False)
    assert engine.engine == "layered"
    parts = _run(engine, 0, engine.boundaries)
    passes = 1 + 2 * len(engine.batches)  # the prefix, then per batch the dialogue and continuation passes
    for i in range(4):
        assert calls.count(f"model.layers.{i}") == passes
    assert calls.count("lm_head") == 2 * len(engine.batches)
    assert sum(len(rows) for rows, _ in parts) == engine.n_rows
    assert all(scores.device.type == "meta" and scores.shape == (len(rows), 6) for rows, scores in parts)
    assert engine.prefix_boundary[1].device.type == "cpu" and engine.prefix_boundary[3].device.type == "meta"

    # Masked runs restart from the kept states entering layer 1 (on cpu) and layer 3 (on meta).
    engine.prepared = True
    for neurons, start in (({1: torch.tensor([3, 5]), 3: torch.tensor([7])}, 1), ({3: torch.tensor([2])}, 3)):
        assert engine.start_layer(neurons) == start
        calls.clear()
        with mask_neurons(lm.model, neurons):
            parts = _run(engine, start, [])
        assert calls.count("model.layers.0") == 0 and calls.count("model.layers.3") == 1 + 2 * len(engine.batches)
        assert all(scores.device.type == "meta" for _, scores in parts)


def test_plain_path_scores_on_a_model_whose_layers_sit_on_two_devices(tiny_tokenizer):
    # The model's own forward moves the hidden states between devices through accelerate's hooks;
    # the label picking after it must follow the last layer's device.
    lm, calls = _split_model(tiny_tokenizer, hooks=True)
    prompt = classification_prompt(tiny_tokenizer, SHOTS, prompt_format="chat")
    contexts = [prompt.ids(dialogue_ids(tiny_tokenizer, d)) for d in DIALOGUES]
    with torch.inference_mode():
        scores, fed = plain_label_scores(lm, contexts, label_ids(tiny_tokenizer, "bare"), tiny_tokenizer.pad_token_id)
    assert scores.device.type == "meta" and scores.shape == (3, 6) and fed > 0
    assert calls.count("lm_head") == 1 and calls.count("model.layers.3") == 1


def _tensors(value) -> list[torch.Tensor]:
    """The tensors accelerate's send_to_device reaches (and copies) in a layer call's arguments:
    it recurses into tuples, lists and mappings, and moves anything with `.to`."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for part in value for t in _tensors(part)]
    if isinstance(value, Mapping):
        return [t for part in value.values() for t in _tensors(part)]
    assert not hasattr(value, "to"), f"{type(value).__name__} has .to: a device hook would move it whole"
    return []


def test_the_shared_prefix_reaches_each_layer_inside_the_store_which_device_hooks_do_not_copy(tiny_llama):
    from accelerate.utils import send_to_device

    prompt = classification_prompt(tiny_llama.tokenizer, SHOTS, prompt_format="chat")
    engine = MaskedClassifier(tiny_llama, prompt, DIALOGUES, "score", batch_size=3, shared_attention=True, max_new_tokens=8, label_format="bare", recalibrate=False)
    with torch.inference_mode():
        prefix_kv, _ = engine._prefix(0)
    prefix_tensors = {id(t) for pair in prefix_kv.values() for t in pair}
    seen: list[dict] = []

    def record(module, args, kwargs):
        seen.append(kwargs)

    handles = [layer.register_forward_pre_hook(record, with_kwargs=True) for layer in decoder_layers(tiny_llama.model)]
    try:
        with torch.inference_mode():
            engine._dialogue(engine.batches[0], 0, prefix_kv)
    finally:
        for handle in handles:
            handle.remove()
    assert len(seen) == len(decoder_layers(tiny_llama.model))
    for kwargs in seen:
        assert not prefix_tensors & {id(t) for t in _tensors(kwargs)}  # no prefix key/value in what a hook copies
        stores = [value for value in kwargs.values() if isinstance(value, KVStore)]
        assert stores and all(send_to_device(store, torch.device("meta")) is store for store in stores)
    store = next(value for value in seen[0].values() if isinstance(value, KVStore) and value.shared_prefix)
    assert store.shared_prefix_of(2) is prefix_kv[2]  # each layer fetches its own layer's keys/values
