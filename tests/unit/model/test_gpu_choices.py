"""GPU settings without a GPU (issue 10). Which attention a loaded model runs: sdpa on GPUs,
flash_attention_2 when the flash-attn package is importable and the caller (count) passes only
2D padding masks; transformers' default on the CPU (whether flash-attn is importable is faked).
And `model.device: cuda` where torch sees no GPU stops count and mask-eval with one line naming
the key, before the model is loaded."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from emoneurons.model import loading as model
from emoneurons.runtime.stage_run import stage_ending
from helpers.stage_runner import REPO


def fake_flash_attn(monkeypatch, installed: bool) -> None:
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "flash_attn":
            return object() if installed else None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(model.importlib.util, "find_spec", find_spec)


@pytest.fixture
def flash_importable(monkeypatch):
    fake_flash_attn(monkeypatch, installed=True)


def test_sdpa_on_gpus_without_flash_attention(monkeypatch):
    fake_flash_attn(monkeypatch, installed=False)
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


@pytest.mark.parametrize("stage", ["count", "mask_eval"])
def test_cuda_without_a_gpu_is_one_line_naming_the_key(stage, tmp_path, monkeypatch, capsys):
    import polars as pl
    import yaml

    from emoneurons.emotions import EMOTIONS

    repo = REPO
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # as on a machine without a GPU
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["model"]["device"] = "cuda"
    params["eval"]["controls"] = ["uniform"]  # matched would need count's counts too
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "split").mkdir()
    for name in ("train", "test"):
        pl.DataFrame({"dialogue": ["A: a long day. B: it was."] * 6, "theme": list(EMOTIONS),
                      "label": list(EMOTIONS)}).write_parquet(tmp_path / "split" / f"{name}.parquet")
    # Valid inputs to the device's check (the model is what fails): a neurons.json of each ratio.
    chosen = {"selected": 1, "neurons": {e: [[0, 0]] for e in EMOTIONS}}
    (tmp_path / "neurons.json").write_text(json.dumps(
        {"top_rate": params["select"]["top_rate"], "assign": "lape", "layers": 2, "neurons_per_layer": 8,
         "ratios": {f"{r:g}": chosen for r in {*params["eval"]["ratios"], params["select"]["top_rate"]}}}))
    spec = importlib.util.spec_from_file_location(f"stage_{stage}", repo / "stages" / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths = ({"train": tmp_path / "split/train.parquet"} if stage == "count" else
             {"split": tmp_path / "split", "neurons": tmp_path / "neurons.json"})
    with pytest.raises(SystemExit) as exit_, stage_ending(stage):
        module.main(params=tmp_path / "params.yaml", out=tmp_path / "out", checkpoints=tmp_path / "ckpt", **paths)
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["model.device: 'cuda' but torch sees no CUDA GPU; use model.device: cpu (or auto)"]
    assert not (tmp_path / "out").exists()
