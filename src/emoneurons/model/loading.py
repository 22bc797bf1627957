"""Loading the causal LM: an embedded GGUF (SmolLM2, Gemma 3: model/embedded.py), a hub id, or a local path."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from emoneurons.model.embedded import embedded_source
from emoneurons.model.versions import check_supported_versions
from emoneurons.params import EMBEDDED_MODELS, ModelParams, ParamsError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str  # what reports call it: the hub id, path, or "SmolLM2-135M-Instruct (GGUF)"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def cache_root() -> Path:
    """Per-user cache (converted models, the default DVC remote): $EMONEURONS_CACHE, else
    $XDG_CACHE_HOME/emoneurons, else ~/.cache/emoneurons."""
    if os.environ.get("EMONEURONS_CACHE"):
        return Path(os.environ["EMONEURONS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "emoneurons"


def _resolve(params: ModelParams) -> tuple[str, str | None, str]:
    """(folder or hub id, GGUF file or None, the name reports give the model) for model.id."""
    if params.id in EMBEDDED_MODELS:
        return embedded_source(params.id, params.gguf_file, cache_root())
    return params.id, params.gguf_file, params.id


def _converted_dir(source: str, gguf_file: str) -> Path:
    """Where a dequantised copy of a GGUF model is kept: GGUF loading dequantises in Python (~30 s
    for the 135M model), a safetensors copy loads in about a second. Keyed by the file's identity."""
    path = Path(source) / gguf_file
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "converted" / f"{path.stem}-{key}"


def device_and_dtype(device: str, dtype: str, cuda_devices: int | None = None) -> tuple[str, torch.dtype]:
    """model.device (its form checked by params.py) against the GPUs torch sees (a one-line
    ParamsError naming the key), and model.dtype with `auto` resolved: bfloat16 on CUDA (and `auto`
    with a GPU), float32 on the CPU."""
    cuda_devices = torch.cuda.device_count() if cuda_devices is None else cuda_devices
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if index >= cuda_devices:
            seen = f"{cuda_devices} CUDA GPU{'s' * (cuda_devices != 1)}" if cuda_devices else "no CUDA GPU"
            raise ParamsError(f"model.device: {device!r} but torch sees {seen}; use model.device: cpu (or auto)")
    on_gpu = device.startswith("cuda") or (device == "auto" and cuda_devices > 0)
    return device, _DTYPES["bfloat16" if on_gpu else "float32"] if dtype == "auto" else _DTYPES[dtype]


def attention_implementation(device: str, dtype: torch.dtype, padding_masks_only: bool,
                             cuda_devices: int | None = None) -> str | None:
    """transformers' attn_implementation for a model on `device`: None (its default) on the CPU;
    on GPUs flash_attention_2 when the flash-attn package is installed, the dtype is 16-bit and
    the caller gives the model only 2D padding masks (count), else sdpa (torch's fused kernels)."""
    cuda_devices = torch.cuda.device_count() if cuda_devices is None else cuda_devices
    if device == "cpu" or cuda_devices == 0:
        return None
    if padding_masks_only and dtype in (torch.bfloat16, torch.float16) and importlib.util.find_spec("flash_attn"):
        return "flash_attention_2"
    return "sdpa"


def device_map(device: str) -> str | dict[str, str] | None:
    """from_pretrained's device_map for model.device: `auto` spreads the layers over the GPUs
    (accelerate); a GPU gets every weight read straight onto it, so a rank never holds a host copy
    of the weights (16 GB for 8B in bf16); the cpu: None, transformers' default (on the host)."""
    if device == "auto":
        return "auto"
    if device == "cpu":
        return None
    return {"": device}


def load_model(params: ModelParams, padding_masks_only: bool = False) -> LoadedModel:
    """Load model and tokenizer for inference (eval mode, no grad), offline when HF_HUB_OFFLINE=1.
    `padding_masks_only`: the caller passes only 2D padding masks (flash_attention_2 may be used)."""
    check_supported_versions()  # a torch or transformers outside pyproject.toml's range: one line, before any work
    source, gguf_file, name = _resolve(params)
    _, dtype = device_and_dtype(params.device, params.dtype)  # before any loading: a bad device is one line
    kwargs: dict = {"dtype": dtype}
    # flash_attention_2 only for callers that say `padding_masks_only`: the classifier passes
    # explicit 4D masks, which it does not take
    attention = attention_implementation(params.device, dtype, padding_masks_only)
    if attention is not None:
        kwargs["attn_implementation"] = attention
    placement = device_map(params.device)
    if placement is not None:
        kwargs["device_map"] = placement
    if gguf_file is not None and Path(source, gguf_file).exists():
        converted = _converted_dir(source, gguf_file)
        if not (converted / "config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
            model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=torch.float32)
            tmp = converted.with_name(converted.name + f".tmp{os.getpid()}")
            # The weights are plain dequantised tensors by now; only the GGUF marker forbids saving.
            model.hf_quantizer = None
            model.config.__dict__.pop("quantization_config", None)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            tmp.replace(converted) if not converted.exists() else None
        source, gguf_file = str(converted), None
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, **kwargs)
    if placement is None:
        model.to(params.device)
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, name=name)
