"""Which attention a loaded model runs (issue 10, fast on a GPU): sdpa on GPUs, flash_attention_2
when the flash-attn package is importable and the caller (count) passes only 2D padding masks;
transformers' default on the CPU. Importability is faked: the package is not installed here."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from emoneurons.neurons import model


@pytest.fixture
def flash_importable(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return object() if name == "flash_attn" else real(name, *args, **kwargs)

    monkeypatch.setattr(model.importlib.util, "find_spec", find_spec)


def test_flash_attention_is_absent_in_this_environment():
    assert importlib.util.find_spec("flash_attn") is None  # so the cases below really fake it


def test_sdpa_on_gpus_without_flash_attention():
    for device in ("cuda", "cuda:1", "auto"):
        assert model.attention_implementation(device, torch.bfloat16, True, cuda_devices=2) == "sdpa"
        assert model.attention_implementation(device, torch.bfloat16, False, cuda_devices=2) == "sdpa"


def test_flash_attention_when_importable_for_padding_masks_in_16_bits(flash_importable):
    assert model.attention_implementation("cuda", torch.bfloat16, True, cuda_devices=1) == "flash_attention_2"
    assert model.attention_implementation("auto", torch.float16, True, cuda_devices=4) == "flash_attention_2"
    # explicit 4D masks (the classifier) or float32: flash_attention_2 takes neither
    assert model.attention_implementation("cuda", torch.bfloat16, False, cuda_devices=1) == "sdpa"
    assert model.attention_implementation("cuda", torch.float32, True, cuda_devices=1) == "sdpa"


def test_cpu_keeps_transformers_default(flash_importable):
    assert model.attention_implementation("cpu", torch.float32, True, cuda_devices=1) is None
    assert model.attention_implementation("auto", torch.float32, True, cuda_devices=0) is None
