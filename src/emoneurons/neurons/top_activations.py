"""What chosen FFN neurons respond to, from one pass over a set of dialogues: per neuron the k
dialogues with the largest gate activation (and the token where it peaks), and per vocabulary
token how often the neuron fires on it (gate_proj(x) > 0, LAPE's `gate` activation; the FFN
through model/architecture.py, so a fused gate_up_proj works too).

Only running top-k and per-token counts are kept, each layer's neurons' on that layer's device (a
model spread over GPUs never mixes devices); the chosen neurons' gate values of a batch are read
once in a forward hook and dropped. The counted tokens are those `count` counts with
text=dialogue: the dialogue's own tokens, not the BOS the tokenizer adds before them.

The dialogues come a piece at a time (PIECE_DIALOGUES; the cards stage reads the train split so,
273k dialogues at EmoPrism's volume): a piece is tokenized, cut into length-sorted batches and
run, and of its token ids only those of the dialogues in some neuron's running top-k are kept (at
most k x neurons dialogues, for the cards' contexts). What the pass holds is one piece and the
running state, whatever the number of dialogues; a piece's batches are the ones one pass over the
piece alone makes, so a list of up to PIECE_DIALOGUES dialogues is batched as it always was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm import tqdm

from emoneurons.model.batching import length_batches
from emoneurons.model.hooks import at_layer, on_gate_output
from emoneurons.model.loading import LoadedModel
from emoneurons.model.special_tokens import pad_token_id
from emoneurons.neurons.counting import CountedText, counting_inputs, padded_batch
from emoneurons.neurons.masking import ffn_modules
from emoneurons.text.truncation import Truncation


@dataclass(frozen=True)
class TopK:
    """Running top-k per neuron: k rows, one column per neuron, best first; -inf / -1 where empty."""

    values: Tensor  # [k, n] float32
    dialogue: Tensor  # [k, n] int64: which dialogue
    position: Tensor  # [k, n] int64: the peak token's position within that dialogue's fed ids


def empty_top_k(k: int, n: int, device: torch.device | str = "cpu") -> TopK:
    return TopK(
        values=torch.full((k, n), float("-inf"), device=device),
        dialogue=torch.full((k, n), -1, dtype=torch.long, device=device),
        position=torch.full((k, n), -1, dtype=torch.long, device=device),
    )


def merge_top_k(current: TopK, values: Tensor, dialogue: Tensor, position: Tensor) -> TopK:
    """`current` merged with one candidate per new dialogue: values and positions [B, n], dialogue
    [B]; the k largest values per column stay, equal values by lower dialogue index (dialogues
    that share an opening peak equally), so the order dialogues come in does not matter."""
    k = current.values.shape[0]
    all_values = torch.cat([current.values, values.to(current.values.dtype)])
    all_dialogue = torch.cat([current.dialogue, dialogue.unsqueeze(1).expand_as(values)])
    all_position = torch.cat([current.position, position])
    # Two stable sorts: by dialogue, then by value; empty entries (-inf) sink to the end either way.
    by_dialogue = torch.sort(torch.where(all_dialogue < 0, torch.iinfo(torch.long).max, all_dialogue), dim=0, stable=True).indices
    by_value = torch.sort(all_values.gather(0, by_dialogue), dim=0, descending=True, stable=True).indices[:k]
    order = by_dialogue.gather(0, by_value)
    return TopK(all_values.gather(0, order), all_dialogue.gather(0, order), all_position.gather(0, order))


# Dialogues tokenized and batched together: their ids as Python ints take ~36 bytes a token (~35 MB
# for 4,096 of EmoPrism's ~234-token dialogues); length bucketing is within a piece.
PIECE_DIALOGUES = 4096


@dataclass(frozen=True)
class NeuronActivity:
    neurons: list[tuple[int, int]]  # (layer, index) per column
    top: TopK
    token_counts: Tensor  # [V] int64: counted occurrences of each token
    token_active: Tensor  # [V, n] int64: of those, how many with the neuron's gate > 0
    fed: dict[int, tuple[int, ...]]  # the fed token ids (BOS + its own tokens) of each dialogue in `top`, by index
    start: dict[int, int]  # where those dialogues' own tokens start in `fed`
    truncated: Truncation | None = field(default=None, compare=False)  # what model.max_length cut (reported, never silent)

    @property
    def tokens(self) -> int:
        return int(self.token_counts.sum())


def _columns(neurons: Sequence[tuple[int, int]]) -> dict[int, tuple[Tensor, Tensor]]:
    """{layer: (indices within the layer, their columns in the output)}; the layers are checked
    against the model by hooks.at_layer where they are looked up."""
    grouped: dict[int, tuple[list[int], list[int]]] = {}
    for column, (layer, index) in enumerate(neurons):
        grouped.setdefault(int(layer), ([], []))
        grouped[int(layer)][0].append(int(index))
        grouped[int(layer)][1].append(column)
    return {layer: (torch.tensor(idx), torch.tensor(cols)) for layer, (idx, cols) in grouped.items()}


def _gate_hooks(mlps: Sequence, layers: Mapping[int, _LayerRunning], gathered: dict[int, Tensor]) -> AbstractContextManager[None]:
    """While open, each hooked layer's gate values of the chosen neurons go into `gathered`
    (float32, on that layer's device)."""
    def keep(gate: Tensor, layer: int, idx: Tensor) -> None:
        gathered[layer] = gate.index_select(-1, idx).float()

    return on_gate_output(mlps, {layer: (lambda gate, layer=layer, idx=running.idx: keep(gate, layer, idx))
                                 for layer, running in layers.items()})


@dataclass
class _LayerRunning:
    """What one pass keeps of one layer's chosen neurons, on that layer's device."""

    idx: Tensor  # [n_l] indices within the layer (on the layer's device)
    columns: list[int]  # their columns in the output
    top: TopK  # [k, n_l]
    token_active: Tensor  # [V, n_l]


class _BatchCopies:
    """The current batch's counted mask, row offsets, dialogue indices, counted positions (flat)
    and their token ids, copied once to each device that asks."""

    def __init__(self, *host: Tensor) -> None:
        self._host = host
        self._copies: dict[torch.device, tuple[Tensor, ...]] = {}

    def on(self, device: torch.device) -> tuple[Tensor, ...]:
        if device not in self._copies:
            self._copies[device] = tuple(t.to(device) for t in self._host)
        return self._copies[device]


def _add_batch(lm: LoadedModel, items: Sequence[CountedText], members: list[int], layers: Mapping[int, _LayerRunning],
               gathered: dict[int, Tensor], token_counts: Tensor, first: int = 0) -> None:
    """One batch of dialogues through the decoder, merged into each layer's running state
    (`items[i]` is dialogue first + i)."""
    tokenizer = lm.tokenizer
    pad_id = pad_token_id(tokenizer)
    batch_items = [items[i] for i in members]
    batch = padded_batch(batch_items, pad_id, tokenizer.padding_side)
    width = batch.input_ids.shape[1]
    counted = torch.zeros((len(members), width), dtype=torch.bool)
    for b, (item, offset) in enumerate(zip(batch_items, batch.offsets)):
        counted[b, offset + item.start : offset + item.end] = True
    rows = counted.reshape(-1).nonzero().squeeze(1)  # on the host: no device sync for a boolean index
    gathered.clear()
    device = token_counts.device  # the embeddings'
    lm.model.model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                   position_ids=batch.position_ids.to(device), use_cache=False)
    copies = _BatchCopies(counted, torch.tensor(batch.offsets, dtype=torch.long), torch.tensor(members, dtype=torch.long) + first,
                          rows, batch.input_ids.reshape(-1)[rows])
    for layer, running in layers.items():
        gate = gathered[layer]  # [B, S, n_l]
        counted_here, offsets, dialogue, rows_here, ids = copies.on(gate.device)
        peak, where = gate.masked_fill(~counted_here.unsqueeze(-1), float("-inf")).max(dim=1)  # [B, n_l]
        running.top = merge_top_k(running.top, peak, dialogue, where - offsets.unsqueeze(1))
        active = gate.reshape(-1, gate.shape[-1]).index_select(0, rows_here) > 0
        running.token_active.index_add_(0, ids, active.long())
    ids = copies.on(device)[4]
    token_counts.index_add_(0, ids, torch.ones_like(ids))


class _Pass:
    """One pass's running state: per layer with chosen neurons its top-k and firing counts (on that
    layer's device), the per-token counts (on the embeddings'), and the fed ids of the dialogues in
    some running top-k."""

    def __init__(self, lm: LoadedModel, neurons: Sequence[tuple[int, int]], k: int, batch_size: int) -> None:
        self.lm, self.batch_size = lm, batch_size
        self.mlps = ffn_modules(lm.model)
        device = lm.model.model.get_input_embeddings().weight.device
        vocab = lm.model.get_input_embeddings().weight.shape[0]
        self.layers: dict[int, _LayerRunning] = {}
        for layer, (idx, cols) in _columns(neurons).items():
            where = at_layer(self.mlps, layer).down_proj.weight.device  # bounds checked before any hook
            self.layers[layer] = _LayerRunning(idx.to(where), cols.tolist(), empty_top_k(k, len(cols), where),
                                               torch.zeros((vocab, len(cols)), dtype=torch.long, device=where))
        self.token_counts = torch.zeros(vocab, dtype=torch.long, device=device)
        self.gathered: dict[int, Tensor] = {}
        self.kept: dict[int, CountedText] = {}

    def hooks(self) -> AbstractContextManager[None]:
        return _gate_hooks(self.mlps, self.layers, self.gathered)

    def add_piece(self, items: Sequence[CountedText], first: int, progress=None) -> None:
        """`items` (dialogues first, first + 1, ...) through the decoder, merged into the running state."""
        for members in length_batches([len(item.ids) for item in items], self.batch_size):
            _add_batch(self.lm, items, members, self.layers, self.gathered, self.token_counts, first)
            if progress is not None:
                progress.update(len(members))

    def keep_contexts(self, items: Sequence[CountedText], first: int) -> None:
        """After `add_piece(items, first)`: the ids of the dialogues now in some top-k kept (those
        of this piece added), the rest let go. One read of the top-k per piece and layer."""
        ranked = {int(d) for running in self.layers.values() for d in running.top.dialogue.flatten().tolist() if d >= 0}
        self.kept = {d: item for d, item in self.kept.items() if d in ranked}
        self.kept |= {d: items[d - first] for d in ranked if first <= d < first + len(items)}


def activity_by_layer(lm: LoadedModel, items: Sequence[CountedText], neurons: Sequence[tuple[int, int]], *, k: int,
                      batch_size: int, desc: str = "") -> tuple[Tensor, dict[int, _LayerRunning]]:
    """One pass over `items` (as one piece): the per-token counts (on the embeddings' device) and,
    per layer with chosen neurons, its running top-k and firing counts on that layer's device."""
    search = _Pass(lm, neurons, k, batch_size)
    progress = tqdm(total=len(items), desc=desc or "cards", unit="dialogue", leave=False, disable=not desc)
    try:
        with search.hooks(), torch.inference_mode():
            search.add_piece(items, 0, progress)
    finally:
        progress.close()
    return search.token_counts, search.layers


def pieces_of(dialogues: Sequence[str]) -> Iterable[Sequence[str]]:
    """A list of dialogues as consecutive pieces of PIECE_DIALOGUES."""
    size = PIECE_DIALOGUES
    return (dialogues[start : start + size] for start in range(0, len(dialogues), size))


def neuron_activity(
    lm: LoadedModel,
    dialogues: Sequence[str] | Iterable[Sequence[str]],
    neurons: Sequence[tuple[int, int]],
    *,
    k: int,
    batch_size: int,
    max_length: int,
    desc: str = "",
    total: int | None = None,
) -> NeuronActivity:
    """One pass over the dialogues: the k dialogues with the largest gate activation of each
    neuron and the per-token firing counts. `dialogues`: a list (cut into pieces of
    PIECE_DIALOGUES), or pieces of consecutive dialogues (`total` of them in all, for the progress
    bar), as the cards stage reads the train split. Batching does not change the result."""
    pieces = pieces_of(dialogues) if isinstance(dialogues, Sequence) and (not dialogues or isinstance(dialogues[0], str)) else dialogues
    search = _Pass(lm, neurons, k, batch_size)
    truncated: Truncation | None = None
    first = 0
    progress = tqdm(total=len(dialogues) if total is None and isinstance(dialogues, Sequence) else total, desc=desc or "cards",
                    unit="dialogue", disable=not desc)
    try:
        with search.hooks(), torch.inference_mode():
            for piece in pieces:
                # The emotion is not used here; counting_inputs gives the fed ids and the counted span.
                items, cut = counting_inputs(lm.tokenizer, piece, ["anger"] * len(piece), text="dialogue", positions="all",
                                             max_length=max_length)
                if len(items) != len(piece):  # it drops dialogues with no token of their own
                    raise ValueError(f"{len(piece) - len(items)} dialogue(s) have no tokens within max_length={max_length}")
                truncated = cut if truncated is None else truncated.merged(cut)
                search.add_piece(items, first, progress)
                search.keep_contexts(items, first)
                first += len(piece)
    finally:
        progress.close()
    n = len(neurons)
    top = empty_top_k(k, n)
    token_active = torch.zeros((search.token_counts.shape[0], n), dtype=torch.long)
    for running in search.layers.values():  # each layer's columns into the output's, on the host
        top.values[:, running.columns] = running.top.values.cpu()
        top.dialogue[:, running.columns] = running.top.dialogue.cpu()
        top.position[:, running.columns] = running.top.position.cpu()
        token_active[:, running.columns] = running.token_active.cpu()
    if truncated is None:  # no dialogue at all
        truncated = counting_inputs(lm.tokenizer, [], [], text="dialogue", positions="all", max_length=max_length)[1]
    return NeuronActivity([(int(layer), int(index)) for layer, index in neurons], top, search.token_counts.cpu(), token_active,
                          {d: item.ids for d, item in sorted(search.kept.items())},
                          {d: item.start for d, item in sorted(search.kept.items())}, truncated)


@dataclass(frozen=True)
class TokenLift:
    token: int
    count: int  # counted occurrences
    active: int  # occurrences with the neuron firing
    lift: float  # (active / count) / (the neuron's firing rate over all counted tokens)


def token_lift(token_counts: Tensor, token_active: Tensor, *, min_count: int, top: int) -> list[list[TokenLift]]:
    """Per neuron (column of token_active [V, n]), the `top` tokens seen at least `min_count` times
    that it fires on most often relative to their frequency (lift; ties: more firings, lower id)."""
    total = int(token_counts.sum())
    out = []
    for column in token_active.T:
        fired = int(column.sum())
        if total == 0 or fired == 0:
            out.append([])
            continue
        base = fired / total
        eligible = ((token_counts >= min_count) & (column > 0)).nonzero().squeeze(1).tolist()
        ranked = sorted(eligible, key=lambda t: (-(int(column[t]) / int(token_counts[t])), -int(column[t]), t))[:top]
        out.append([TokenLift(t, int(token_counts[t]), int(column[t]), round(int(column[t]) / int(token_counts[t]) / base, 4))
                    for t in ranked])
    return out
