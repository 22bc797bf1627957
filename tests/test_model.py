"""Model loading: the packaged GGUF (through its converted copy) and a local folder."""

from __future__ import annotations

import pytest
import torch

from emoneurons.neurons.model import EMBEDDED_GGUF, embedded_model_dir, load_model
from emoneurons.params import ModelParams


def test_local_folder_loads_the_same_weights(tmp_path, tiny_llama):
    tiny_llama.model.save_pretrained(tmp_path / "m")
    tiny_llama.tokenizer.save_pretrained(tmp_path / "m")
    loaded = load_model(ModelParams(id=str(tmp_path / "m")))
    ids = torch.tensor([tiny_llama.tokenizer.encode("A: what a day\nB: indeed")])
    assert torch.equal(loaded.model(ids).logits, tiny_llama.model(ids).logits)
    assert loaded.name == str(tmp_path / "m")


def test_missing_model_path_fails_clearly(tmp_path):
    with pytest.raises(OSError):
        load_model(ModelParams(id=str(tmp_path / "absent")))


@pytest.mark.slow
def test_embedded_gguf_copy_matches_direct_gguf_load(tmp_path, monkeypatch):
    """The cached safetensors copy must give the same logits as transformers' own GGUF load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("EMONEURONS_CACHE", str(tmp_path))
    loaded = load_model(ModelParams())  # converts once, then loads from the copy
    assert any((tmp_path / "converted").glob("*/model.safetensors"))
    source = embedded_model_dir()
    direct = AutoModelForCausalLM.from_pretrained(source, gguf_file=EMBEDDED_GGUF, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=EMBEDDED_GGUF)
    text = "A: I can't believe you did that!\nB: I'm so sorry."
    assert tokenizer.encode(text) == loaded.tokenizer.encode(text)
    ids = torch.tensor([tokenizer.encode(text)])
    with torch.no_grad():
        assert torch.allclose(direct(ids).logits, loaded.model(ids).logits, atol=1e-5)
    assert loaded.model.config.num_hidden_layers == 30
