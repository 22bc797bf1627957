"""Per-emotion activation counts of every FFN neuron (LAPE's f_{u,e} and T_e).

A neuron u = (layer, index) is active on a token when gate_proj(x) > 0 (`gate`, LAPE's
act_fn(gate) > 0: SiLU and GELU are positive exactly where their input is) or when
act_fn(gate_proj(x)) * up_proj(x) > 0 (`product`, the input of down_proj). Phi-3 computes gate
and up as one fused gate_up_proj, the gate its first half (model/architecture.py).

Which tokens count: each dialogue is fed as prefix + dialogue tokens, and only the dialogue's
own tokens are counted (T_e counts exactly the same tokens):
- text=dialogue: what `tokenizer.encode(dialogue, add_special_tokens=True)` starts with; the
  special tokens the tokenizer adds before the text (BOS) are fed but NOT counted: they are not
  the dialogue's text, and BOS at position 0 activates identically for every dialogue, which
  would only add an emotion-blind constant to f and T.
- text=prompt: the zero-shot classification prompt's prefix, then the dialogue's tokens.
Anything after the dialogue (EOS, the prompt's suffix) is never fed: the model is causal, so
the dialogue tokens' activations do not depend on it.
positions=last counts only the last dialogue token of each dialogue.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import nn
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from emoneurons.batching import length_batches, padded_ids
from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.prompts.classification import classification_prompt
from emoneurons.model.architecture import GatedFFN
from emoneurons.neurons.masking import ffn_modules
from emoneurons.model.loading import LoadedModel
from emoneurons.prompt_format import added_special_prefix
from emoneurons.truncation import Truncation

Positions = Literal["all", "last"]
Text = Literal["dialogue", "prompt"]
Activation = Literal["gate", "product"]

# float32 holds every integer below 2**24 exactly, so a 0/1 matmul over fewer rows is exact.
_EXACT_FLOAT32_ROWS = 2**24


@dataclass(frozen=True)
class CountedText:
    """Token ids to feed, the counted span [start, end) within them, and the emotion index."""

    ids: tuple[int, ...]
    start: int
    end: int
    emotion: int


def counting_inputs(
    tokenizer: PreTrainedTokenizerBase,
    dialogues: Sequence[str],
    emotions: Sequence[str],
    *,
    text: Text,
    positions: Positions,
    max_length: int,
    prompt_format: str = "auto",
) -> tuple[list[CountedText], Truncation]:
    """Each dialogue as CountedText (prefix and dialogue cut to max_length tokens in all, from the
    end), and what the cut took. `prompt_format` (text=prompt): the classification prompt's format
    (prompt_format.py)."""
    if len(dialogues) != len(emotions):
        raise ValueError(f"{len(dialogues)} dialogues but {len(emotions)} emotions")
    unknown = sorted({e for e in emotions if e not in EMOTION_INDEX})
    if unknown:
        raise ValueError(f"unknown emotion {unknown[0]!r}; allowed: {', '.join(EMOTIONS)}")
    if text not in ("dialogue", "prompt") or positions not in ("all", "last"):
        raise ValueError(f"text {text!r} / positions {positions!r}: allowed: dialogue|prompt, all|last")
    # The same prefix for every dialogue: the prompt's, or the tokenizer's BOS (constant).
    if text == "prompt":
        prefix = list(classification_prompt(tokenizer, prompt_format=prompt_format).prefix)
    else:
        prefix = added_special_prefix(tokenizer)
    # One batched call, the same tokens as prompts.dialogue_ids gives one dialogue at a time.
    encoded = tokenizer(list(dialogues), add_special_tokens=False)["input_ids"] if len(dialogues) else []
    items, truncated = [], Truncation(max_length=max_length, budget=max(max_length - len(prefix), 0))
    for own, emotion in zip(encoded, emotions):
        ids = [*prefix, *own]
        truncated.add(len(ids) - max_length)
        if len(ids) > max_length:
            ids = ids[:max_length]
        end = len(ids)
        start = min(len(prefix), end)
        if start == end:  # nothing of the dialogue left to count
            continue
        if positions == "last":
            start = end - 1
        items.append(CountedText(tuple(ids), start, end, EMOTION_INDEX[emotion]))
    return items, truncated


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # [B, S]
    attention_mask: torch.Tensor  # [B, S]
    position_ids: torch.Tensor  # [B, S], 0 at each row's first real token
    offsets: list[int]  # where each row's first real token sits (0 with right padding)
    rows: torch.Tensor | None  # flat indices (into B*S) of the counted tokens, or None: see weights
    weights: torch.Tensor  # [6, rows] float32: one-hot emotion of each counted row; zero columns
    # for uncounted rows (padding, prompt) when `rows` is None
    counted: list[int]  # counted tokens per emotion (EMOTIONS order)


def padded_batch(items: Sequence[CountedText], pad_id: int, padding_side: str) -> Batch:
    """Pad to the longest item on `padding_side`; positions restart at each row's first token."""
    padded = padded_ids([item.ids for item in items], pad_id, padding_side)
    width = padded.ids.shape[1]
    position_ids = (torch.arange(width).unsqueeze(0) - torch.tensor(padded.offsets).unsqueeze(1)).masked_fill(~padded.valid, 0)
    rows: list[int] = []
    emotion_of_row: list[int] = []
    for b, (item, offset) in enumerate(zip(items, padded.offsets)):
        rows.extend(range(b * width + offset + item.start, b * width + offset + item.end))
        emotion_of_row.extend([item.emotion] * (item.end - item.start))
    if len(items) * width >= _EXACT_FLOAT32_ROWS:
        raise ValueError(f"a batch of {len(items) * width} tokens; at most {_EXACT_FLOAT32_ROWS - 1} are counted exactly")
    emotion_index = torch.tensor(emotion_of_row, dtype=torch.long)
    # Most rows counted (positions=all): weight every row, zero for the rest, and skip a gather
    # that would copy nearly the whole activation; few rows (positions=last): gather them.
    gather = 2 * len(rows) < len(items) * width
    columns = torch.arange(len(rows)) if gather else torch.tensor(rows, dtype=torch.long)
    weights = torch.zeros((len(EMOTIONS), len(rows) if gather else len(items) * width), dtype=torch.float32)
    weights[emotion_index, columns] = 1.0
    return Batch(
        input_ids=padded.ids,
        attention_mask=padded.valid.long(),
        position_ids=position_ids,
        offsets=padded.offsets,
        rows=torch.tensor(rows, dtype=torch.long) if gather else None,
        weights=weights,
        counted=[emotion_of_row.count(e) for e in range(len(EMOTIONS))],
    )


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device`; to a GPU pinned and copied asynchronously: a blocking copy
    would make the host wait for the GPU's previous work once per batch."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


class _BatchOnDevices:
    """The current batch's counted rows and emotion weights, copied once to each device that
    asks, and a float32 scratch buffer per device for the 0/1 activations."""

    def __init__(self) -> None:
        self.batch: Batch | None = None
        self._copies: dict[torch.device, tuple[torch.Tensor | None, torch.Tensor]] = {}
        self._scratch: dict[torch.device, torch.Tensor] = {}

    def set(self, batch: Batch) -> None:
        self.batch, self._copies = batch, {}

    def on(self, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor]:
        if device not in self._copies:
            assert self.batch is not None
            rows = None if self.batch.rows is None else _to_device(self.batch.rows, device)
            self._copies[device] = (rows, _to_device(self.batch.weights, device))
        return self._copies[device]

    def scratch(self, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
        buffer = self._scratch.get(device)
        if buffer is None or buffer.numel() < shape[0] * shape[1]:
            buffer = self._scratch[device] = torch.empty(shape[0] * shape[1], dtype=torch.float32, device=device)
        return buffer[: shape[0] * shape[1]].view(shape)


def _accumulate(counts: torch.Tensor, values: torch.Tensor, current: _BatchOnDevices) -> None:
    """counts [6, N] (int64) += per emotion, how many counted tokens have values > 0."""
    rows, weights = current.on(values.device)
    flat = values.reshape(-1, values.shape[-1])
    if rows is not None:
        flat = flat.index_select(0, rows)
    # `> 0` written straight into float32 (one pass; a bool tensor and a cast take ~10x longer on
    # CPU). It also turns a NaN of a padding row (fully masked attention) into 0 before the
    # matmul, where 0 * NaN would poison the sum. Exact: a sum of 0/1 terms stays an integer
    # below 2**24 at every step (padded_batch checks the row count), so float32 holds it exactly
    # whatever the summation order (TF32 on GPUs rounds inputs, but 0 and 1 are exact there).
    active = torch.gt(flat, 0, out=current.scratch(tuple(flat.shape), flat.device))
    counts += torch.mm(weights, active).to(torch.int64)


def _hook_layers(mlps: Sequence[GatedFFN], counts: Sequence[torch.Tensor], activation: Activation, current: _BatchOnDevices) -> list:
    handles = []
    for mlp, layer_counts in zip(mlps, counts):
        if activation == "gate":
            def on_gate(module: nn.Module, args: tuple, output: torch.Tensor, layer_counts: torch.Tensor = layer_counts,
                        mlp: GatedFFN = mlp) -> None:
                _accumulate(layer_counts, mlp.gate_of(output), current)

            handles.append(mlp.gate_source.register_forward_hook(on_gate))
        else:
            # down_proj's input is act_fn(gate_proj(x)) * up_proj(x): the product, already computed.
            def on_product(module: nn.Module, args: tuple, layer_counts: torch.Tensor = layer_counts) -> None:
                _accumulate(layer_counts, args[0], current)

            handles.append(mlp.down_proj.register_forward_pre_hook(on_product))
    return handles


def _layer_counters(mlps: Sequence[GatedFFN]) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """One [L, 6, N] int64 tensor on the model's device (or one [6, N] per layer when layers
    are spread over devices), and its per-layer views."""
    devices = [mlp.down_proj.weight.device for mlp in mlps]
    n = mlps[0].n_neurons
    if len(set(devices)) == 1:
        whole = torch.zeros((len(mlps), len(EMOTIONS), n), dtype=torch.int64, device=devices[0])
        return whole, list(whole.unbind(0))
    return None, [torch.zeros((len(EMOTIONS), n), dtype=torch.int64, device=d) for d in devices]


class BatchSchedule(Protocol):
    """Which of the length-sorted batches this process runs, and what it keeps across runs and
    processes (resume.CountSchedule: shards over ranks, checkpoints, the sum over ranks)."""

    def start(self, n_batches: int) -> tuple[list[int], tuple[torch.Tensor, torch.Tensor] | None]:
        """Batch indices still to run, and saved partial (counts [L, 6, N], T [6]) or None."""

    def finished(self, dialogues: list[int], snapshot: Callable[[], torch.Tensor], T: torch.Tensor) -> None:
        """After each batch (`dialogues`: the indices of the dialogues it counted); snapshot() gives
        the counts so far as [L, 6, N]."""

    def combine(self, counts: torch.Tensor, T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The final counts of this process combined with the others'."""


def _stacked(whole: torch.Tensor | None, counts: Sequence[torch.Tensor]) -> torch.Tensor:
    return whole if whole is not None else torch.stack([c.cpu() for c in counts])


def _counted_items(
    tokenizer: PreTrainedTokenizerBase, dialogues: Sequence[str], emotions: Sequence[str], *, text: Text, positions: Positions,
    max_length: int, prompt_format: str, truncation: list[Truncation] | None,
) -> list[CountedText]:
    """counting_inputs, with a warning when dialogues were cut (and what was cut into `truncation`)."""
    items, truncated = counting_inputs(
        tokenizer, dialogues, emotions, text=text, positions=positions, max_length=max_length, prompt_format=prompt_format
    )
    if truncation is not None:
        truncation.append(truncated)
    if truncated.dialogues:
        warnings.warn(f"{truncated.dialogues} of {len(dialogues)} dialogues truncated to max_length={max_length} tokens", stacklevel=3)
    return items


def _feed_batches(lm: LoadedModel, items: Sequence[CountedText], batches: Sequence[list[int]], current: _BatchOnDevices,
                  T: torch.Tensor, desc: str, finished: Callable[[list[int]], None]) -> None:
    """Each batch of `items` through the decoder (the hooks count); T += its counted tokens;
    finished(the batch's item indices) after each."""
    tokenizer = lm.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    decoder = lm.model.model  # the decoder stack only: the lm_head's logits are not needed
    input_device = decoder.get_input_embeddings().weight.device
    progress = tqdm(total=sum(len(items[i].ids) for b in batches for i in b), desc=desc or "count", unit="tok", leave=False)
    try:
        with torch.inference_mode():
            for indices in batches:
                batch = padded_batch([items[i] for i in indices], pad_id, tokenizer.padding_side)
                current.set(batch)
                decoder(
                    input_ids=_to_device(batch.input_ids, input_device),
                    attention_mask=_to_device(batch.attention_mask, input_device),
                    position_ids=_to_device(batch.position_ids, input_device),
                    use_cache=False,
                )
                T += torch.tensor(batch.counted, dtype=torch.int64)
                progress.update(sum(len(items[i].ids) for i in indices))
                finished(list(indices))
    finally:
        progress.close()


def activation_counts(
    lm: LoadedModel,
    dialogues: Sequence[str],
    emotions: Sequence[str],
    *,
    positions: Positions = "all",
    text: Text = "dialogue",
    activation: Activation = "gate",
    batch_size: int = 16,
    max_length: int = 1024,
    max_padding: float = 0.1,
    desc: str = "",
    prompt_format: str = "auto",
    truncation: list[Truncation] | None = None,
    schedule: BatchSchedule | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """f int64 [layers, neurons, 6] (active counted tokens per emotion) and T int64 [6] (counted tokens).
    Dialogues past max_length are cut (warned); `truncation`, when given, receives what was cut.
    `schedule`: run only some batches, resume from saved counts, combine with other processes."""
    if activation not in ("gate", "product"):
        raise ValueError(f"activation {activation!r}: allowed: gate, product")
    mlps = ffn_modules(lm.model)  # UnsupportedModelError before any work
    items = _counted_items(lm.tokenizer, dialogues, emotions, text=text, positions=positions, max_length=max_length,
                           prompt_format=prompt_format, truncation=truncation)
    whole, counts = _layer_counters(mlps)
    T = torch.zeros(len(EMOTIONS), dtype=torch.int64)
    batches = length_batches([len(item.ids) for item in items], batch_size, max_padding)
    todo = list(range(len(batches)))
    if schedule is not None:
        todo, saved = schedule.start(len(batches))
        if saved is not None:
            for layer_counts, saved_layer in zip(counts, saved[0]):
                layer_counts.copy_(saved_layer)
            T += saved[1]

    def finished(indices: list[int]) -> None:
        if schedule is not None:
            schedule.finished(indices, lambda: _stacked(whole, counts), T)

    current = _BatchOnDevices()
    handles = _hook_layers(mlps, counts, activation, current)
    try:
        _feed_batches(lm, items, [batches[b] for b in todo], current, T, desc, finished)
    finally:
        for handle in handles:
            handle.remove()
    stacked = _stacked(whole, counts)
    if schedule is not None:
        stacked, T = schedule.combine(stacked, T)
    return stacked.permute(0, 2, 1).contiguous().cpu(), T
