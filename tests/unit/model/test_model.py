"""Model loading: the packaged GGUF (through its converted copy) and a local folder."""

from __future__ import annotations

import pytest
import torch

from emoneurons.model.embedded import SMOLLM2_GGUF, SMOLLM2_NAME, embedded_source, smollm2_dir
from emoneurons.model.loading import _resolve, load_model
from emoneurons.params import EMBEDDED_MODEL
from helpers.repo_params import section


def test_local_folder_loads_the_same_weights(tmp_path, tiny_llama):
    tiny_llama.model.save_pretrained(tmp_path / "m")
    tiny_llama.tokenizer.save_pretrained(tmp_path / "m")
    loaded = load_model(section("model", id=str(tmp_path / "m")))
    ids = torch.tensor([tiny_llama.tokenizer.encode("A: what a day\nB: indeed")])
    assert torch.equal(loaded.model(ids).logits, tiny_llama.model(ids).logits)
    assert loaded.name == str(tmp_path / "m")


def test_what_an_id_means_comes_from_embedded_py_for_embedded_names_only(tmp_path):
    """params.py checks model.id against the embedded names; model/embedded.py says what each is,
    and loading uses that: an embedded name is its package's file, any other id is itself."""
    smollm2 = (str(smollm2_dir()), SMOLLM2_GGUF, SMOLLM2_NAME)
    assert embedded_source(EMBEDDED_MODEL, None, tmp_path) == smollm2 == _resolve(section("model", id=EMBEDDED_MODEL))
    assert _resolve(section("model", id="org/model")) == ("org/model", None, "org/model")
    with pytest.raises(ValueError, match="not an embedded model"):
        embedded_source("org/model", None, tmp_path)


def test_missing_model_path_fails_clearly(tmp_path):
    # A local path that does not exist is a params error before anything loads.
    with pytest.raises(ValueError, match="absent: no such folder; allowed: embedded, embedded-gemma3, a hub id"):
        section("model", id=str(tmp_path / "absent"))


@pytest.mark.slow
def test_embedded_gguf_copy_matches_direct_gguf_load(tmp_path, monkeypatch):
    """The cached safetensors copy must give the same logits as transformers' own GGUF load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("EMONEURONS_CACHE", str(tmp_path))
    loaded = load_model(section("model"))  # converts once, then loads from the copy
    assert any((tmp_path / "converted").glob("*/model.safetensors"))
    source = smollm2_dir()
    direct = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    text = "A: I can't believe you did that!\nB: I'm so sorry."
    assert tokenizer.encode(text) == loaded.tokenizer.encode(text)
    ids = torch.tensor([tokenizer.encode(text)])
    with torch.no_grad():
        assert torch.allclose(direct(ids).logits, loaded.model(ids).logits, atol=1e-5)
    assert loaded.model.config.num_hidden_layers == 30


def test_cuda_device_without_a_gpu_is_one_line_naming_the_key():
    from emoneurons.model.loading import device_and_dtype
    from emoneurons.params import ParamsError

    for device in ("cuda", "cuda:1"):
        with pytest.raises(ParamsError, match=r"^model\.device: 'cuda(:1)?' but torch sees no CUDA GPU") as error:
            device_and_dtype(device, "auto", cuda_devices=0)
        assert "\n" not in str(error.value)
    with pytest.raises(ParamsError, match="model.device: 'cuda:1' but torch sees 1 CUDA GPU;"):
        device_and_dtype("cuda:1", "auto", cuda_devices=1)
    for device in ("cuda:x", "mps", "gpu"):  # the form is params.py's to check, before any stage works
        with pytest.raises(ParamsError, match=rf"^params.yaml: model.device: '{device}' is not a device; allowed: cpu, cuda, cuda:N, auto$"):
            section("model", device=device)


def test_auto_dtype_is_bfloat16_on_cuda_and_float32_on_the_cpu():
    from emoneurons.model.loading import device_and_dtype

    assert device_and_dtype("cpu", "auto", cuda_devices=1)[1] == torch.float32
    assert device_and_dtype("cuda", "auto", cuda_devices=1)[1] == torch.bfloat16
    assert device_and_dtype("auto", "auto", cuda_devices=2)[1] == torch.bfloat16
    assert device_and_dtype("auto", "auto", cuda_devices=0)[1] == torch.float32
    assert device_and_dtype("cuda", "float32", cuda_devices=1)[1] == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a machine without a GPU gives")
def test_load_model_with_cuda_and_no_gpu_fails_before_loading():
    from emoneurons.model.loading import load_model
    from emoneurons.params import ParamsError

    with pytest.raises(ParamsError, match="^model.device: 'cuda'"):
        load_model(section("model", id="owner/not-downloaded", device="cuda"))


def test_device_map_puts_every_weight_on_the_asked_device():
    from emoneurons.model.loading import device_map

    assert device_map("cuda") == {"": "cuda"} and device_map("cuda:3") == {"": "cuda:3"}
    assert device_map("auto") == "auto"
    assert device_map("cpu") is None  # transformers' default: the cpu path is unchanged


def test_a_gpu_device_loads_straight_onto_it_with_no_move_after(tmp_path, tiny_llama, monkeypatch):
    """model.device: cuda is loaded with a device map onto the card, never on the host and then
    moved (~16 GB of host memory per rank for 8B). Here `meta` stands in for the card: the weights
    must end up there, and nn.Module.to must not be called after loading."""
    from torch import nn

    from emoneurons.model import loading

    tiny_llama.model.save_pretrained(tmp_path / "m")
    tiny_llama.tokenizer.save_pretrained(tmp_path / "m")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # model.device: cuda passes its check
    asked = []
    real = loading.device_map

    def onto_meta(device):
        asked.append(device)
        return {"": "meta"} if device.startswith("cuda") else real(device)

    monkeypatch.setattr(loading, "device_map", onto_meta)
    loaded_before_to = []
    original_to = nn.Module.to

    def no_move(self, *args, **kwargs):
        loaded_before_to.append(args or kwargs)
        return original_to(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "to", no_move)
    loaded = load_model(section("model", id=str(tmp_path / "m"), device="cuda", dtype="float32"))
    assert asked == ["cuda"]
    assert {p.device.type for p in loaded.model.parameters()} == {"meta"}
    assert loaded_before_to == []  # no move after loading
