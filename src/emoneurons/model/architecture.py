"""What differs between decoder families, in one place: the decoder layers, each layer's gated
FFN and how its gate is read, the position embeddings each layer gets, the final logits, and
whether mask-eval's layer-by-layer engine can run the family (else it takes the plain path).

Neuron u = (layer l, index i) is the i-th input of layer l's down_proj, act_fn(gate)_i * up_i,
with gate and up from gate_proj / up_proj, or from the first / second half of Phi-3's fused
gate_up_proj. Only torch and transformers are imported here (a bottom layer of the package).
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from emoneurons.errors import EmoneuronsError

# config.model_type -> the family's name. The families tests/unit/model/test_families.py runs through
# counting, masking and the engine against the model's own forward; README lists exactly these.
FAMILIES = {
    "llama": "Llama",
    "mistral": "Mistral",
    "qwen2": "Qwen2",
    "qwen3": "Qwen3",
    "gemma2": "Gemma 2",
    "gemma3_text": "Gemma 3",
    "phi3": "Phi-3",
}
ALLOWED = (
    "Llama (SmolLM), Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3, Phi-3, or another causal LM whose layers "
    "(model.model.layers) have a gated FFN (mlp.gate_proj/up_proj/down_proj, or mlp.gate_up_proj/down_proj)"
)


class UnsupportedModelError(EmoneuronsError, ValueError):
    """The model has no gated FFN to count or mask; one line naming the class and what is allowed."""


@dataclass(frozen=True)
class GatedFFN:
    """One layer's gated FFN: `gate_source` computes the gate (Phi-3: gate and up fused, gate first)."""

    mlp: nn.Module
    gate_source: nn.Linear  # gate_proj, or the fused gate_up_proj
    down_proj: nn.Linear
    act_fn: Callable[[Tensor], Tensor]
    fused: bool

    @property
    def n_neurons(self) -> int:
        return self.down_proj.in_features

    def gate_of(self, source_output: Tensor) -> Tensor:
        """The gate pre-activation [..., N] within `gate_source`'s output."""
        return source_output[..., : self.n_neurons] if self.fused else source_output

    def gate(self, x: Tensor) -> Tensor:
        return self.gate_of(self.gate_source(x))

    def up(self, x: Tensor) -> Tensor:
        return self.gate_source(x)[..., self.n_neurons :] if self.fused else self.mlp.up_proj(x)

    def product(self, x: Tensor) -> Tensor:
        """down_proj's input: act_fn(gate) * up, the neurons' values."""
        return self.act_fn(self.gate(x)) * self.up(x)


def _unsupported(model: nn.Module, what: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"{type(model).__name__}: {what}; emotion neurons are defined on gated FFNs; allowed: {ALLOWED}")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a transformers causal LM (model.model.layers)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise _unsupported(model, "no decoder layers at model.model.layers, so no gated FFN (mlp.gate_proj/up_proj/down_proj)")
    return layers


def _gated_ffn(model: nn.Module, mlp: nn.Module | None) -> GatedFFN:
    down = getattr(mlp, "down_proj", None)
    act = getattr(mlp, "act_fn", None) or getattr(mlp, "activation_fn", None)
    if down is not None and act is not None:
        if hasattr(mlp, "gate_proj") and hasattr(mlp, "up_proj"):
            return GatedFFN(mlp, mlp.gate_proj, down, act, fused=False)
        if hasattr(mlp, "gate_up_proj") and mlp.gate_up_proj.out_features == 2 * down.in_features:
            return GatedFFN(mlp, mlp.gate_up_proj, down, act, fused=True)
    raise _unsupported(model, "layers have no gated FFN (mlp.gate_proj/up_proj/down_proj or mlp.gate_up_proj/down_proj)")


def gated_ffns(model: nn.Module) -> list[GatedFFN]:
    """Each layer's gated FFN; UnsupportedModelError (one line) for a model without one."""
    return [_gated_ffn(model, getattr(layer, "mlp", None)) for layer in decoder_layers(model)]


def _post_ffn_norm(layer: nn.Module) -> nn.Module | None:
    """The norm a block applies to its FFN's output before the residual add (Gemma 2/3), or None."""
    return getattr(layer, "post_feedforward_layernorm", None)


def write_direction_source(model: nn.Module) -> str:
    """What write_directions reads for this model, in words (for the record)."""
    if any(_post_ffn_norm(layer) is not None for layer in decoder_layers(model)):
        return "down_proj column through the post-FFN norm (post_feedforward_layernorm)"
    return "down_proj column"


@torch.no_grad()
def write_directions(model: nn.Module) -> list[Tensor]:
    """Each layer's neuron write directions [neurons, hidden] float32 on the CPU: row i is the
    direction neuron i adds to the residual stream per unit of its value, down_proj's column i;
    where the block normalises the FFN's output before the residual add (Gemma 2/3's
    post_feedforward_layernorm, an RMSNorm), the column through that norm. An RMSNorm scales the
    whole FFN output by one positive number per token and then each dimension by its gain, so a
    neuron's share of the output points along gain * column: the norm applied to the column
    itself gives that direction (its length differs, its direction is exact)."""
    directions = []
    for layer, ffn in zip(decoder_layers(model), gated_ffns(model)):
        columns = ffn.down_proj.weight.T  # [neurons, hidden]
        norm = _post_ffn_norm(layer)
        if norm is not None:
            columns = norm(columns)
        directions.append(columns.float().cpu())
    return directions


def module_device(module: nn.Module) -> torch.device:
    """The device `module` computes on: accelerate's execution device where a device map put a
    hook on it (its weights may sit elsewhere, offloaded), else its first parameter's."""
    hook = getattr(module, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is not None:
        return torch.device(device if not isinstance(device, int) else f"cuda:{device}")
    for tensor in (*module.parameters(), *module.buffers()):  # a rotary embedding has buffers only
        return tensor.device
    return torch.device("cpu")


class DecoderAdapter:
    """The pieces of a decoder that mask-eval's engine calls itself, for one model."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers = decoder_layers(model)
        self.ffns = gated_ffns(model)
        config = model.config
        self.family = FAMILIES.get(getattr(config, "model_type", ""))
        self.layer_types: list[str] | None = getattr(config, "layer_types", None)
        rotary = getattr(model.model, "rotary_emb", None)
        # Gemma 3: one rotary embedding per layer type (local and global), chosen by name.
        self._per_type_rotary = rotary is not None and "layer_type" in inspect.signature(rotary.forward).parameters
        self.attention_softcap = getattr(config, "attn_logit_softcapping", None)
        self.final_softcap = getattr(config, "final_logit_softcapping", None)

    @property
    def layer_windows(self) -> list[int | None]:
        """Each layer's sliding attention window (None: the layer sees every earlier key). A token
        at position q attends keys at k with q - k < window (transformers' sliding_window_overlay).
        Read as the model's own attention reads it: the attention module's `sliding_window` where
        it has one (Gemma 2/3, Qwen2/3: None on full layers), else the config's for every layer
        (Mistral, Phi-3 pass `config.sliding_window` to each layer's attention)."""
        config_window = getattr(self.model.config, "sliding_window", None)
        windows = []
        for layer in self.layers:
            attention = getattr(layer, "self_attn", None)
            window = getattr(attention, "sliding_window", config_window) if attention is not None else config_window
            windows.append(None if window is None else int(window))
        return windows

    @property
    def sliding_window(self) -> int | None:
        """The smallest window of any layer whose attention slides (None: every layer sees all keys)."""
        return min((w for w in self.layer_windows if w is not None), default=None)

    def fast_engine_problem(self) -> str | None:
        """Why the layer-by-layer engine cannot run this model (None: it can)."""
        if self.family is None:
            return (f"{type(self.model).__name__} (model_type {self.model.config.model_type!r}) is not one of the families "
                    f"the engine is tested on ({', '.join(FAMILIES.values())})")
        if getattr(self.model.model, "rotary_emb", None) is None:
            return f"{type(self.model).__name__} has no model.model.rotary_emb"
        if getattr(self.model.config, "use_bidirectional_attention", False):
            return f"{type(self.model).__name__} attends bidirectionally"
        return None

    def layer_devices(self) -> list[torch.device]:
        """The device each decoder layer computes on (one device for a model on one device; a
        device map, `model.device: auto`, spreads the layers over several). Read per call: a
        model may be moved after its adapter is built."""
        return [module_device(layer) for layer in self.layers]

    def input_device(self) -> torch.device:
        """Where token ids go in: the embedding's device."""
        return module_device(self.model.model.embed_tokens)

    def embed(self, ids: Tensor) -> Tensor:
        # Gemma's embed_tokens scales by sqrt(hidden) itself: the module's output is what layer 0 sees.
        return self.model.model.embed_tokens(ids.to(self.input_device()))

    def position_embeddings(self, hidden: Tensor, positions: Tensor) -> list:
        """Each layer's rotary (cos, sin) at `positions` (one computation per layer type)."""
        rotary = self.model.model.rotary_emb
        # Computed where the rotary module sits (the layers' copies are made per device by the
        # engine): it reads only its input's device and dtype, so an empty tensor stands in for
        # `hidden`, which may sit on another device (a device map) and is not copied for this.
        device = module_device(rotary)
        hidden, positions = torch.empty(0, dtype=hidden.dtype, device=device), positions.to(device)
        if not self._per_type_rotary:
            shared = rotary(hidden, positions)
            return [shared] * len(self.layers)
        by_type = {kind: rotary(hidden, positions, kind) for kind in set(self.layer_types)}
        return [by_type[kind] for kind in self.layer_types]

    def logits(self, hidden: Tensor, normed: bool = False) -> Tensor:
        """Final norm (unless `normed`), lm_head and the family's final soft-capping."""
        if not normed:
            norm = self.model.model.norm
            hidden = norm(hidden.to(module_device(norm)))
        lm_head = self.model.get_output_embeddings()
        logits = lm_head(hidden.to(module_device(lm_head)))
        if self.final_softcap is not None:
            logits = torch.tanh(logits / self.final_softcap) * self.final_softcap
        return logits


_ADAPTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_adapter(model: nn.Module) -> DecoderAdapter:
    """The model's adapter, built once per model object."""
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = DecoderAdapter(model)
    return adapter
