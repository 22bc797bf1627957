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
skip_cues (count.skip_cue_tokens): the dialogue's tokens that overlap an emotion cue word
(cue_removal.cue_token_positions; the NRC Emotion Lexicon's words) are fed but not counted, in f
and in T alike: neurons selected from such counts cannot owe their P(e) to firing on the words.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, get_args

import numpy as np
import torch
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.model.architecture import GatedFFN
from emoneurons.model.batching import length_batch_plan, padded_ids
from emoneurons.model.hooks import on_down_proj_input, on_gate_output
from emoneurons.model.loading import LoadedModel
from emoneurons.model.special_tokens import pad_token_id
from emoneurons.neurons.count_inputs import DialogueList, Dialogues, TokenStore
from emoneurons.neurons.masking import ffn_modules
from emoneurons.params import Activation, CountText, Positions, allowed_values
from emoneurons.text.classification_prompt import classification_prompt
from emoneurons.text.cue_removal import CueTokensError, cue_spans, cue_token_positions
from emoneurons.text.prompt_format import ResolvedPromptFormat, added_special_prefix
from emoneurons.text.truncation import Truncation


@dataclass(frozen=True)
class CountedText:
    """Token ids to feed, the counted span [start, end) within them, the emotion index, and the
    positions inside the span that are not counted (cue tokens under count.skip_cue_tokens)."""

    ids: tuple[int, ...]
    start: int
    end: int
    emotion: int
    skip: frozenset[int] = frozenset()

    def counted_positions(self) -> list[int]:
        return [p for p in range(self.start, self.end) if p not in self.skip]


def _check_options(text: str, positions: str) -> None:
    if text not in get_args(CountText) or positions not in get_args(Positions):
        raise ValueError(f"text {text!r} / positions {positions!r}: allowed: {allowed_values(CountText, '|')}, {allowed_values(Positions, '|')}")


def count_prefix(tokenizer: PreTrainedTokenizerBase, text: CountText, prompt_format: ResolvedPromptFormat | None) -> list[int]:
    """The ids fed before every dialogue and never counted: the classification prompt's prefix
    (text=prompt, in `prompt_format`: eval.prompt_format resolved where the model was loaded), or
    the special tokens the tokenizer adds before a text (BOS; no format)."""
    if text == "prompt":
        if prompt_format is None:
            raise ValueError("count.text: prompt needs the resolved prompt format (chat or plain)")
        return list(classification_prompt(tokenizer, prompt_format=prompt_format).prefix)
    return added_special_prefix(tokenizer)


def encode_dialogues(tokenizer: PreTrainedTokenizerBase, dialogues: Sequence[str],
                     skip_cues: Collection[str] | None = None) -> tuple[list[list[int]], list[list[int]]]:
    """Each dialogue's own token ids (no special tokens; one batched call, the same tokens as
    prompts.dialogue_ids gives one dialogue at a time), and the positions among them of tokens
    overlapping a cue word of `skip_cues` (needs a fast tokenizer, for the tokens' character offsets)."""
    if not dialogues:
        return [], []
    if skip_cues is None:
        return tokenizer(list(dialogues), add_special_tokens=False)["input_ids"], [[] for _ in dialogues]
    if not getattr(tokenizer, "is_fast", False):
        raise CueTokensError("count.skip_cue_tokens: true needs a fast tokenizer (token character offsets); "
                             f"{type(tokenizer).__name__} has none; allowed with it: false")
    encoded = tokenizer(list(dialogues), add_special_tokens=False, return_offsets_mapping=True)
    cues = [cue_token_positions(o, cue_spans(d, skip_cues)) for d, o in zip(dialogues, encoded["offset_mapping"])]
    return encoded["input_ids"], cues


def counted_text(prefix: Sequence[int], own: Sequence[int], emotion: int, cues_at: Collection[int], *,
                 positions: Positions, max_length: int) -> CountedText | None:
    """One dialogue as CountedText: prefix and its own ids cut to max_length in all, from the end;
    None when nothing of the dialogue is left to count."""
    ids = [*prefix, *own]
    if len(ids) > max_length:
        ids = ids[:max_length]
    end = len(ids)
    start = min(len(prefix), end)
    if start == end:  # nothing of the dialogue left to count
        return None
    if positions == "last":
        start = end - 1
    skip = frozenset(len(prefix) + p for p in cues_at) & frozenset(range(start, end))
    return CountedText(tuple(ids), start, end, emotion, skip)


def counting_inputs(
    tokenizer: PreTrainedTokenizerBase,
    dialogues: Sequence[str],
    emotions: Sequence[str],
    *,
    text: CountText,
    positions: Positions,
    max_length: int,
    prompt_format: ResolvedPromptFormat | None = None,
    skip_cues: Collection[str] | None = None,
) -> tuple[list[CountedText], Truncation]:
    """Each dialogue as CountedText (prefix and dialogue cut to max_length tokens in all, from the
    end), and what the cut took. `prompt_format` (text=prompt): the classification prompt's format,
    resolved where the model was loaded (text/prompt_format.py). `skip_cues`: cue words whose tokens are not counted (needs a fast tokenizer,
    for the tokens' character offsets). Holds every dialogue's tokens: count itself goes through
    count_dialogues, which keeps them on disk."""
    if len(dialogues) != len(emotions):
        raise ValueError(f"{len(dialogues)} dialogues but {len(emotions)} emotions")
    unknown = sorted({e for e in emotions if e not in EMOTION_INDEX})
    if unknown:
        raise ValueError(f"unknown emotion {unknown[0]!r}; allowed: {', '.join(EMOTIONS)}")
    _check_options(text, positions)
    prefix = count_prefix(tokenizer, text, prompt_format)  # the same for every dialogue
    encoded, cue_positions = encode_dialogues(tokenizer, dialogues, skip_cues)
    items, truncated = [], Truncation(max_length=max_length, budget=max(max_length - len(prefix), 0))
    for own, emotion, cues_at in zip(encoded, emotions, cue_positions):
        truncated.add(len(prefix) + len(own) - max_length)
        item = counted_text(prefix, own, EMOTION_INDEX[emotion], cues_at, positions=positions, max_length=max_length)
        if item is not None:
            items.append(item)
    return items, truncated


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # [B, S]
    attention_mask: torch.Tensor  # [B, S]
    position_ids: torch.Tensor  # [B, S], 0 at each row's first real token
    offsets: list[int]  # where each row's first real token sits (0 with right padding)
    rows: torch.Tensor | None  # flat indices (into B*S) of the counted tokens (few counted), or None: see threshold
    threshold: torch.Tensor | None  # [B, S, 1] float32 (rows None): 0 on counted tokens, +inf on the rest
    emotion: torch.Tensor  # int64 emotion index of each counted row (`rows`), else of each dialogue [B]
    counted: list[int]  # counted tokens per emotion (EMOTIONS order)


def padded_batch(items: Sequence[CountedText], pad_id: int, padding_side: str) -> Batch:
    """Pad to the longest item on `padding_side`; positions restart at each row's first token."""
    padded = padded_ids([item.ids for item in items], pad_id, padding_side)
    width = padded.ids.shape[1]
    position_ids = (torch.arange(width).unsqueeze(0) - torch.tensor(padded.offsets).unsqueeze(1)).masked_fill(~padded.valid, 0)
    rows: list[int] = []
    emotion_of_row: list[int] = []
    for b, (item, offset) in enumerate(zip(items, padded.offsets)):
        counted = item.counted_positions()
        rows.extend(b * width + offset + p for p in counted)
        emotion_of_row.extend([item.emotion] * len(counted))
    # Few rows counted (positions=last): gather them. Most rows counted (positions=all): compare
    # every row against a per-row threshold that no value passes on uncounted rows (padding,
    # prompt), then sum each dialogue's rows: no gather copying nearly the whole activation.
    gather = 2 * len(rows) < len(items) * width
    threshold = None
    if not gather:
        threshold = torch.full((len(items) * width,), float("inf"))
        threshold[torch.tensor(rows, dtype=torch.long)] = 0.0
        threshold = threshold.view(len(items), width, 1)
    emotion = emotion_of_row if gather else [item.emotion for item in items]
    return Batch(
        input_ids=padded.ids,
        attention_mask=padded.valid.long(),
        position_ids=position_ids,
        offsets=padded.offsets,
        rows=torch.tensor(rows, dtype=torch.long) if gather else None,
        threshold=threshold,
        emotion=torch.tensor(emotion, dtype=torch.long),
        counted=[emotion_of_row.count(e) for e in range(len(EMOTIONS))],
    )


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device`; to a GPU pinned and copied asynchronously: a blocking copy
    would make the host wait for the GPU's previous work once per batch."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


@dataclass(frozen=True)
class _OnDevice:
    rows: torch.Tensor | None
    threshold: torch.Tensor | None  # in the activation's dtype: the comparison reads it as it is
    emotion: torch.Tensor


class _BatchOnDevices:
    """The current batch's counted rows (or thresholds) and emotions, copied once to each
    (device, activation dtype) that asks: each layer's hook gets them on its own layer's device."""

    def __init__(self) -> None:
        self.batch: Batch | None = None
        self._copies: dict[tuple[torch.device, torch.dtype], _OnDevice] = {}

    def set(self, batch: Batch) -> None:
        self.batch, self._copies = batch, {}

    def on(self, device: torch.device, dtype: torch.dtype) -> _OnDevice:
        if (device, dtype) not in self._copies:
            assert self.batch is not None
            batch = self.batch
            self._copies[(device, dtype)] = _OnDevice(
                rows=None if batch.rows is None else _to_device(batch.rows, device),
                threshold=None if batch.threshold is None else _to_device(batch.threshold.to(dtype), device),
                emotion=_to_device(batch.emotion, device),
            )
        return self._copies[(device, dtype)]


def _accumulate(counts: torch.Tensor, values: torch.Tensor, current: _BatchOnDevices) -> None:
    """counts [6, N] (int64) += per emotion, how many counted tokens have values [B, S, N] > 0.

    Memory traffic per token (bench/RESULTS.md, "Counting's memory traffic"): the values are read
    once in their own dtype and one bool per neuron is written and read back; the sums are
    integers, exact in any order. A NaN (a padding row's fully masked attention) is never > 0
    nor > inf, so it counts as inactive, as in neurons/reference.py."""
    on = current.on(values.device, values.dtype)
    if on.rows is not None:
        active = values.reshape(-1, values.shape[-1]).index_select(0, on.rows) > 0  # [rows, N] bool
        counts.index_add_(0, on.emotion, active.to(torch.int64))
    else:
        active = torch.gt(values, on.threshold)  # [B, S, N] bool: False on every uncounted row
        counts.index_add_(0, on.emotion, active.sum(dim=1))  # [B, N] int64 per dialogue, then per emotion


def _counting_hooks(mlps: Sequence[GatedFFN], counts: Sequence[torch.Tensor], activation: Activation,
                    current: _BatchOnDevices) -> AbstractContextManager[None]:
    """Every layer's values counted into counts[layer] while open: the gate's output (`gate`), or
    down_proj's input act_fn(gate_proj(x)) * up_proj(x), the product already computed (`product`)."""
    hooks = {layer: (lambda values, layer_counts=layer_counts: _accumulate(layer_counts, values, current))
             for layer, layer_counts in enumerate(counts[:len(mlps)])}
    return on_gate_output(mlps, hooks) if activation == "gate" else on_down_proj_input(mlps, hooks)


def layer_counters(mlps: Sequence[GatedFFN]) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """One [L, 6, N] int64 tensor on the model's device (or one [6, N] per layer, each on its
    layer's device, when layers are spread over devices), and its per-layer views."""
    devices = [mlp.down_proj.weight.device for mlp in mlps]
    n = mlps[0].n_neurons
    if len(set(devices)) == 1:
        whole = torch.zeros((len(mlps), len(EMOTIONS), n), dtype=torch.int64, device=devices[0])
        return whole, list(whole.unbind(0))
    return None, [torch.zeros((len(EMOTIONS), n), dtype=torch.int64, device=d) for d in devices]


class BatchSchedule(Protocol):
    """Which of the length-sorted batches this process runs, and what it keeps across runs and
    processes (resume.CountSchedule: shards over ranks, checkpoints, the sum over ranks)."""

    def rows(self, n: int) -> tuple[int, int]:
        """The rows [start, stop) of n dialogues this process tokenizes first (a contiguous share)."""

    def merged(self, values: torch.Tensor) -> torch.Tensor:
        """An int64 tensor summed over the processes (each fills in its own rows)."""

    def store(self) -> Path | None:
        """The folder where tokens are kept across a kill (None: a temporary one)."""

    def start(self, n_batches: int) -> tuple[list[int], tuple[torch.Tensor, torch.Tensor] | None]:
        """Batch indices still to run, and saved partial (counts [L, 6, N], T [6]) or None."""

    def finished(self, dialogues: np.ndarray, snapshot: Callable[[], torch.Tensor], T: torch.Tensor) -> None:
        """After each batch (`dialogues`: the rows of the dialogues it counted); snapshot() gives
        the counts so far as [L, 6, N]."""

    def combine(self, counts: torch.Tensor, T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The final counts of this process combined with the others'."""


class _OneProcess:
    """The schedule of a count without one: every batch, this process alone, tokens in a temporary folder."""

    def rows(self, n: int) -> tuple[int, int]:
        return 0, n

    def merged(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def store(self) -> Path | None:
        return None

    def start(self, n_batches: int) -> tuple[list[int], None]:
        return list(range(n_batches)), None

    def finished(self, dialogues: np.ndarray, snapshot: Callable[[], torch.Tensor], T: torch.Tensor) -> None:
        pass

    def combine(self, counts: torch.Tensor, T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return counts, T


def _stacked(whole: torch.Tensor | None, counts: Sequence[torch.Tensor]) -> torch.Tensor:
    return whole if whole is not None else torch.stack([c.cpu() for c in counts])


def _feed_batches(lm: LoadedModel, batches: Iterable[Sequence[int]], load: Callable[[Sequence[int]], list[CountedText]],
                  tokens: int, current: _BatchOnDevices, T: torch.Tensor, desc: str,
                  finished: Callable[[Sequence[int]], None]) -> None:
    """Each batch (its items: load(indices)) through the decoder (the hooks count); T += its counted
    tokens; finished(the batch's indices) after each. `tokens`: what the batches feed in all (the bar's total)."""
    tokenizer = lm.tokenizer
    pad_id = pad_token_id(tokenizer)
    decoder = lm.model.model  # the decoder stack only: the lm_head's logits are not needed
    input_device = decoder.get_input_embeddings().weight.device
    # The finished bar stays and ends its line: the stage's summary that follows starts a line of its own.
    progress = tqdm(total=tokens, desc=desc or "count", unit="tok")
    try:
        with torch.inference_mode():
            for indices in batches:
                items = load(indices)
                batch = padded_batch(items, pad_id, tokenizer.padding_side)
                current.set(batch)
                decoder(
                    input_ids=_to_device(batch.input_ids, input_device),
                    attention_mask=_to_device(batch.attention_mask, input_device),
                    position_ids=_to_device(batch.position_ids, input_device),
                    use_cache=False,
                )
                T += torch.tensor(batch.counted, dtype=torch.int64)
                progress.update(sum(len(item.ids) for item in items))
                finished(indices)
    finally:
        progress.close()


def count_batches(lm: LoadedModel, items: Sequence[CountedText], batches: Sequence[list[int]], counts: Sequence[torch.Tensor],
                  T: torch.Tensor, *, activation: Activation, desc: str = "",
                  finished: Callable[[list[int]], None] = lambda indices: None) -> None:
    """Each batch of `items` through the decoder with counting hooks: counts[layer] ([6, N] int64,
    on that layer's device: layer_counters) and T ([6], host) += the batch's; finished(indices) after each."""
    current = _BatchOnDevices()
    tokens = sum(len(items[i].ids) for b in batches for i in b)
    with _counting_hooks(ffn_modules(lm.model), counts, activation, current):
        _feed_batches(lm, batches, lambda indices: [items[i] for i in indices], tokens, current, T, desc,
                      lambda indices: finished(list(indices)))


class ActivationCounts(NamedTuple):
    """What count_dialogues returns: f int64 [layers, neurons, 6] (active counted tokens per
    emotion), T int64 [6] (counted tokens), and what model.max_length cut from the dialogues."""

    f: torch.Tensor
    T: torch.Tensor
    truncation: Truncation


def activation_counts(lm: LoadedModel, dialogues: Sequence[str], emotions: Sequence[str], **options: Any) -> ActivationCounts:
    """count_dialogues over dialogues and their emotions given as lists (ValueError on a length
    mismatch or an unknown emotion)."""
    return count_dialogues(lm, DialogueList(dialogues, emotions), **options)


def count_dialogues(
    lm: LoadedModel,
    source: Dialogues,
    *,
    positions: Positions,
    text: CountText,
    activation: Activation,
    batch_size: int,
    max_length: int,
    max_padding: float = 0.1,
    desc: str = "",
    prompt_format: ResolvedPromptFormat | None = None,
    schedule: BatchSchedule | None = None,
    skip_cues: Collection[str] | None = None,
) -> ActivationCounts:
    """f int64 [layers, neurons, 6] (active counted tokens per emotion), T int64 [6] (counted
    tokens) and what was cut: dialogues past max_length are cut (warned).
    `prompt_format` (text=prompt): chat or plain, resolved where the model was loaded.
    `skip_cues`: cue words whose tokens are fed but counted in neither f nor T.
    `schedule`: run only some batches, resume from saved counts, combine with other processes.

    Memory does not grow with the dialogues: they are tokenized a piece at a time into a token
    store on disk (count_inputs.py; the schedule's folder, else a temporary one), the batches are
    made from their lengths alone (the same batches as from the tokens; a plan of two arrays, not a
    Python object per dialogue), and each batch's ids are read back as it runs."""
    if activation not in get_args(Activation):
        raise ValueError(f"activation {activation!r}: allowed: {allowed_values(Activation)}")
    _check_options(text, positions)
    mlps = ffn_modules(lm.model)  # UnsupportedModelError before any work
    schedule = schedule if schedule is not None else _OneProcess()
    tokenizer = lm.tokenizer
    prefix = count_prefix(tokenizer, text, prompt_format)
    budget = max(max_length - len(prefix), 0)
    n, emotions = len(source), source.emotions()
    recipe = {"prefix": prefix, "budget": budget, "rows": n, "vocab": len(tokenizer), "skip_cues": skip_cues is not None,
              "cues": sorted(skip_cues) if skip_cues is not None else None}
    with _store_folder(schedule.store()) as folder:
        store = TokenStore(folder, _store_name(schedule), recipe, n)
        first, last = schedule.rows(n)
        if not store.load():
            store.reset()
            _tokenize(store, tokenizer, source, np.arange(first, last), budget, skip_cues, desc)
            store.save()
        full = _token_counts(store, schedule, first, last)  # every dialogue's, on every process
        cut = _truncation(full, len(prefix), max_length, budget)
        if cut.dialogues:
            warnings.warn(f"{cut.dialogues} of {n} dialogues truncated to max_length={max_length} tokens", stacklevel=2)
        rows = np.flatnonzero(np.minimum(full, budget) > 0)  # the dialogues with tokens left to count
        lengths = len(prefix) + np.minimum(full[rows], budget)
        plan = length_batch_plan(lengths, batch_size, max_padding)

        whole, counts = layer_counters(mlps)
        T = torch.zeros(len(EMOTIONS), dtype=torch.int64)
        todo, saved = schedule.start(len(plan))
        if saved is not None:
            for layer_counts, saved_layer in zip(counts, saved[0]):
                layer_counts.copy_(saved_layer)
            T += saved[1]
        members = plan.members(todo)  # indices into rows of the dialogues this process counts
        tokens = int(lengths[members].sum())  # what its batches feed in all
        needed = rows[members]
        missing = needed[store.offset[needed] < 0]
        if len(missing):  # rows of this process's batches another process tokenized first
            _tokenize(store, tokenizer, source, np.sort(missing), budget, skip_cues, desc)
            store.save()
        del members, needed, missing  # through the batches count holds ~60 bytes a dialogue: the store's index, full, rows, lengths, the plan

        current = _BatchOnDevices()
        with store.reader() as stored, _counting_hooks(mlps, counts, activation, current):
            def load(indices: Sequence[int]) -> list[CountedText]:
                items = []
                for i in indices:
                    own, cues = stored.get(int(rows[i]))
                    items.append(counted_text(prefix, own, int(emotions[rows[i]]), cues, positions=positions, max_length=max_length))
                return items

            def finished(indices: Sequence[int]) -> None:
                schedule.finished(rows[indices], lambda: _stacked(whole, counts), T)

            _feed_batches(lm, (plan[b] for b in todo), load, tokens, current, T, desc, finished)
    stacked, T = schedule.combine(_stacked(whole, counts), T)
    return ActivationCounts(stacked.permute(0, 2, 1).contiguous().cpu(), T, cut)


def _token_counts(store: TokenStore, schedule: BatchSchedule, first: int, last: int) -> np.ndarray:
    """Every dialogue's own token count (int64), from the store of each process's rows [first, last)."""
    mine = np.zeros(len(store.full), dtype=np.int64)
    mine[first:last] = store.full[first:last]
    return schedule.merged(torch.from_numpy(mine)).numpy()


def _store_name(schedule: BatchSchedule) -> str:
    """The token store's file names: one per process (`tokens-rank0-of-2`)."""
    name = getattr(schedule, "name", "")
    return f"tokens-{name.removesuffix('.safetensors')}" if name else "tokens"


@contextmanager
def _store_folder(folder: Path | None) -> Iterator[Path]:
    if folder is not None:
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="emoneurons-count-") as tmp:
        yield Path(tmp)


def _tokenize(store: TokenStore, tokenizer: PreTrainedTokenizerBase, source: Dialogues, wanted: np.ndarray, budget: int,
              skip_cues: Collection[str] | None, desc: str) -> None:
    """The dialogues of rows `wanted` (sorted) tokenized a piece at a time into `store`, each cut to `budget` ids."""
    if not len(wanted):
        return
    progress = tqdm(total=len(wanted), desc=f"{desc}: tokenize", unit=" dialogues", disable=not desc)
    with progress:
        for first, texts in source.texts(int(wanted[0]), int(wanted[-1]) + 1):
            picked = wanted[(wanted >= first) & (wanted < first + len(texts))]
            if not len(picked):
                continue
            for part in _by_characters(picked, [len(texts[row - first]) for row in picked], PIECE_CHARS):
                encoded, cue_positions = encode_dialogues(tokenizer, [texts[row - first] for row in part], skip_cues)
                store.add((int(row), own[:budget], len(own), [p for p in cues if p < budget])
                          for row, own, cues in zip(part, encoded, cue_positions))
                progress.update(len(part))


def _by_characters(rows: np.ndarray, sizes: list[int], most: int) -> Iterator[np.ndarray]:
    """`rows` in consecutive parts of at most `most` characters (a longer dialogue alone)."""
    begin, total = 0, 0
    for end, size in enumerate(sizes):
        if end > begin and total + size > most:
            yield rows[begin:end]
            begin, total = end, 0
        total += size
    if begin < len(rows):
        yield rows[begin:]


# Characters tokenized per call: the tokenizer's encodings (~150 bytes a token, ~4 characters a
# token in English) of a call are what count holds most while it tokenizes, whatever the dialogues' lengths.
PIECE_CHARS = 256_000


def _truncation(full: np.ndarray, prefix: int, max_length: int, budget: int) -> Truncation:
    """What model.max_length cut, from every dialogue's own token count (`full`)."""
    cuts = prefix + full.astype(np.int64) - max_length
    cut = cuts[cuts > 0]
    return Truncation(max_length=max_length, budget=budget, dialogues=int(len(cut)), tokens_cut=int(cut.sum()),
                      longest_cut=int(cut.max()) if len(cut) else 0)
