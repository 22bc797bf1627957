"""Classifying dialogues with a chat prompt, unmodified or with FFN neurons masked, computing as
few tokens as possible.

The cost of mask-eval is the number of tokens pushed through the decoder, so:
- the prompt's shared prefix (system prompt, in-context examples, user prompt opening) is run once
  per mask and its keys/values are reused by every dialogue batch;
- dialogue batches are length-bucketed and right-padded (a real token never attends to a pad that
  follows it, so a plain causal mask is exact and only the last real position is read);
- only the last real position's logits are formed; multi-token labels are scored by one small
  continuation pass over the cached keys/values;
- layer reuse: a mask that touches no layer below k leaves layers < k unchanged, so the unmodified
  run keeps the hidden states entering layer k (prefix, dialogue batches, label continuations)
  and a masked run computes layers k..L-1 only.

The decoder layers are called directly (model.model.layers) with a small key/value store standing in
for a transformers Cache (attention only calls `cache.update`), each layer's rotary embeddings
(model/architecture.py: Gemma 3 has local and global ones) and an explicit additive 4D mask,
which eager and sdpa attention both take.
On a CPU the prefix and dialogue passes take a faster attention instead (`shared_prefix_attention`,
registered with transformers' AttentionInterface and switched on only while they run): the prefix's
keys/values are attended once for all rows of a batch and all query heads of a key/value head, as
one flash-attention call, the rows' own tokens causally in a second, and the two are merged by
their log-sum-exps; no mask, no per-row copy of the prefix's keys/values, no GQA repeat.
The families of architecture.FAMILIES run through this engine (tests/test_families.py pins each
against the model's own forward); Gemma 2's attention soft-capping takes the concatenating path
(the model's own attention), never the shared-prefix one. A model the engine cannot serve (another
family, or rows longer than a sliding attention window) is classified by the plain path instead:
the model's own forward on every full prompt, exact and slower, said once as a warning.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from emoneurons.emotions import EMOTIONS, parse_emotion
from emoneurons.prompts.chat import ChatPrompt, dialogue_ids, label_ids
from emoneurons.model.architecture import model_adapter
from emoneurons.neurons.masking import decoder_layers, mask_neurons
from emoneurons.model.loading import LoadedModel

Method = Literal["score", "generate"]


@dataclass(frozen=True)
class Classification:
    predicted: list[str | None]
    scores: Tensor | None  # [n, 6] label log-likelihoods (score; calibrated when asked), None for generate
    tokens_computed: int  # full-model token equivalents (token x layer units / layers)
    tokens_naive: int = 0  # the same dialogues from scratch: full prompt each, all layers
    answers: list[str] | None = None  # generate: the decoded answers
    reference_scores: Tensor | None = None  # [m, 6] the calibration dialogues' raw label log-likelihoods
    cut_off: list[bool] | None = None  # generate: the answer stopped at max_new_tokens, no EOS (callers decide)


def calibrate_scores(scores: Tensor, reference: Tensor) -> Tensor:
    """Label log-likelihoods [n, 6] -> log p(label | dialogue) / mean p(label | reference), the label
    probabilities renormalised over the six labels; one reference row is contextual calibration."""
    prior = torch.softmax(reference, dim=1).mean(dim=0)
    return torch.log_softmax(scores, dim=1) - torch.log(prior)


class _KVStore:
    """Stands in for a transformers Cache inside attention: each layer sees `past` keys/values
    (batch 1 is broadcast) before its own; its own are kept in `new` (and appended when decoding)."""

    def __init__(self, past: Mapping[int, tuple[Tensor, Tensor]], append: bool = False) -> None:
        self.past = dict(past)
        self.append = append
        self.new: dict[int, tuple[Tensor, Tensor]] = {}

    def update(self, key: Tensor, value: Tensor, layer_idx: int, *args, **kwargs) -> tuple[Tensor, Tensor]:
        self.new[layer_idx] = (key, value)
        if layer_idx in self.past:
            past_key, past_value = self.past[layer_idx]
            batch = key.shape[0]
            key = torch.cat([past_key.expand(batch, -1, -1, -1), key], dim=2)
            value = torch.cat([past_value.expand(batch, -1, -1, -1), value], dim=2)
        if self.append:
            self.past[layer_idx] = (key, value)
        return key, value

    # Attention code of some models asks these of a cache; the store never slides or compiles.
    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.past[layer_idx][0].shape[2] if layer_idx in self.past else 0


SHARED_PREFIX_ATTENTION = "emoneurons_shared_prefix"


def _flash_cpu():
    """torch's CPU flash attention that also returns the log-sum-exp (None where torch lacks it)."""
    return getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def shared_prefix_attention(module, query: Tensor, key: Tensor, value: Tensor, attention_mask, scaling: float | None = None,
                            dropout: float = 0.0, shared_prefix: Mapping[int, tuple[Tensor, Tensor]] | None = None, **kwargs):
    """Attention of `query` [B, H, T, D] over all keys of the layer's shared prefix ([1, Hkv, P, D],
    seen by every row; none when absent) and then causally over the rows' own `key`/`value`
    [B, Hkv, T, D]; `attention_mask` is ignored (right padding needs none: a real token never
    attends to a later pad). Returns [B, T, H, D] like transformers' attention functions."""
    flash = _flash_cpu()
    b, h, t, d = query.shape
    kv_heads = key.shape[1]
    group = h // kv_heads
    scale = d**-0.5 if scaling is None else scaling
    if group > 1:  # the own part is small: repeat its keys/values per query head
        key = key[:, :, None].expand(b, kv_heads, group, t, d).reshape(b, h, t, d)
        value = value[:, :, None].expand(b, kv_heads, group, t, d).reshape(b, h, t, d)
    out, lse = flash(query, key, value, 0.0, True, scale=scale)[:2]
    prefix = (shared_prefix or {}).get(module.layer_idx)
    if prefix is not None:
        # Every row and every query head of a key/value head sees the same prefix keys: one long query.
        folded = query.view(b, kv_heads, group, t, d).transpose(0, 1).reshape(1, kv_heads, b * group * t, d)
        out_p, lse_p = flash(folded, prefix[0], prefix[1], 0.0, False, scale=scale)[:2]
        out_p = out_p.view(kv_heads, b, group, t, d).transpose(0, 1).reshape(b, h, t, d)
        lse_p = lse_p.view(kv_heads, b, group, t).transpose(0, 1).reshape(b, h, t)
        total = torch.logaddexp(lse, lse_p)
        out = out * torch.exp(lse - total).unsqueeze(-1).to(out.dtype) + out_p * torch.exp(lse_p - total).unsqueeze(-1).to(out.dtype)
    return out.transpose(1, 2).contiguous(), None


def _register_attention() -> bool:
    try:
        from transformers import AttentionInterface
    except ImportError:  # older transformers: the concatenating path only
        return False
    AttentionInterface.register(SHARED_PREFIX_ATTENTION, shared_prefix_attention)
    return True


_REGISTERED = _register_attention()


def shared_prefix_available(lm: LoadedModel) -> bool:
    """Whether `shared_prefix_attention` can run for this model (a CPU model; torch and transformers
    new enough; plain softmax attention: no soft-capping of the attention logits, as Gemma 2 has)."""
    plain_softmax = model_adapter(lm.model).attention_softcap is None
    return _REGISTERED and _flash_cpu() is not None and lm.device.type == "cpu" and plain_softmax


@contextmanager
def _attention(lm: LoadedModel, name: str | None) -> Iterator[None]:
    """The model's attention implementation switched to `name` while the context is open (None: unchanged)."""
    config = lm.model.config
    before = config._attn_implementation
    if name is not None:
        config._attn_implementation = name
    try:
        yield
    finally:
        if name is not None:
            config._attn_implementation = before


def real_token_index(valid: Tensor) -> Tensor | None:
    """The flat positions of the real tokens of `valid` [B, T] (False at padding); None without
    padding. Computed once per batch when the batch is built: nonzero() waits for the device."""
    return None if bool(valid.all()) else valid.flatten().nonzero().squeeze(1)


@contextmanager
def _ffn_rows(lm: LoadedModel, rows: Mapping[int, Tensor]) -> Iterator[None]:
    """While open, layer l's FFN runs on the flat positions `rows[l]` only (layers not in `rows`:
    on all); the other positions get a zero FFN output, for positions nothing reads: padding, and
    after the last layer everything but the positions whose logits are formed."""
    shapes: list[torch.Size] = []

    def hooks(index: Tensor):
        def pack(module: torch.nn.Module, args: tuple) -> tuple:
            shapes.append(args[0].shape)
            return (args[0].reshape(-1, args[0].shape[-1]).index_select(0, index),)

        def unpack(module: torch.nn.Module, args: tuple, out: Tensor) -> Tensor:
            shape = shapes.pop()
            full = out.new_zeros(shape[:-1].numel(), out.shape[-1])
            return full.index_copy_(0, index, out).view(*shape[:-1], out.shape[-1])

        return pack, unpack

    handles = []
    blocks = decoder_layers(lm.model)
    for layer, index in rows.items():
        pack, unpack = hooks(index)
        handles += [blocks[layer].mlp.register_forward_pre_hook(pack), blocks[layer].mlp.register_forward_hook(unpack)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def additive_mask(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """[B, q, k] booleans (True = may attend) -> [B, 1, q, k] additive mask (0 or dtype min)."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)


def run_layers(
    lm: LoadedModel,
    hidden: Tensor,
    positions: Tensor,
    mask: Tensor | None,
    layers: range,
    past: Mapping[int, tuple[Tensor, Tensor]] | None = None,
    keep: Iterable[int] = (),
    append: bool = False,
    shared: Mapping[int, tuple[Tensor, Tensor]] | None = None,
    real: Tensor | None = None,
    read: Tensor | None = None,
) -> tuple[Tensor, _KVStore, dict[int, Tensor]]:
    """Run decoder layers `layers` on `hidden` [B, T, H] at `positions` [B|1, T] with `mask`
    [B|1, 1, T, past+T]; return the output, the key/value store, and the hidden states entering
    each layer in `keep`. `mask` None (with no `past`): `shared_prefix_attention`, each row
    attending all of `shared`'s keys/values (batch 1; none: no prefix) and its own tokens causally.
    `real`: the flat positions of the real tokens of right-padded rows (`real_token_index`); the
    FFNs skip the rest. `read`: the flat positions whose output is read after the model's last
    layer (empty: none, only keys/values are wanted); that layer's FFN skips the rest, which
    changes no key or value (a layer's keys/values come from its input)."""
    blocks = decoder_layers(lm.model)
    store = _KVStore(past or {}, append=append)
    rotary = model_adapter(lm.model).position_embeddings(hidden, positions)
    kept: dict[int, Tensor] = {}
    keep = set(keep)
    extra = {"shared_prefix": shared or {}} if mask is None else {}
    rows = {layer: real for layer in layers} if real is not None else {}
    if read is not None and len(layers) and layers.stop == len(blocks):
        rows[layers.stop - 1] = read
    with _attention(lm, SHARED_PREFIX_ATTENTION if mask is None else None), _ffn_rows(lm, rows):
        for index in layers:
            if index in keep:
                kept[index] = hidden
            hidden = blocks[index](hidden, attention_mask=mask, position_ids=positions, cache=store, position_embeddings=rotary[index], **extra)
            if isinstance(hidden, tuple):  # older layer APIs return (hidden, ...)
                hidden = hidden[0]
    if len(layers) and layers.stop in keep:
        kept[layers.stop] = hidden
    return hidden, store, kept


def last_logprobs(lm: LoadedModel, hidden: Tensor) -> Tensor:
    """Final norm and lm_head (and the family's logit soft-capping) on [B, H] (or [B, T, H]) hidden
    states -> float32 log-probabilities."""
    return torch.log_softmax(model_adapter(lm.model).logits(hidden).float(), dim=-1)


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted, stable), so padding stays small."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@dataclass
class _Batch:
    rows: list[int]
    ids: Tensor  # [B, T] right-padded dialogue + suffix
    lengths: Tensor  # [B]
    real: Tensor | None  # flat positions of the real tokens (None: no padding)
    last: Tensor  # flat positions of each row's last real token (the only ones read at the end)
    reference: bool = False  # calibration rows (see `MaskedClassifier.recalibrate`)
    boundary: dict[int, Tensor] = field(default_factory=dict)  # unmodified hidden entering layer k
    continuation_boundary: dict[int, Tensor] = field(default_factory=dict)


class MaskedClassifier:
    """One prompt and one set of dialogues, classified under any number of masks.

    Call `classify()` (unmodified) first: it keeps the hidden states entering the layers in
    `boundaries`, which later masked calls start from when their mask touches no layer below."""

    def __init__(
        self,
        lm: LoadedModel,
        prompt: ChatPrompt,
        dialogues: Sequence[str],
        method: Method,
        *,
        batch_size: int,
        max_new_tokens: int = 8,
        boundaries: Iterable[int] = (),
        label_format: str = "bare",
        reference: Sequence[str] = (),
        recalibrate: bool = False,
        shared_attention: bool | None = None,
    ) -> None:
        """`reference`: dialogues (a content-free one, or train dialogues) whose mean label
        probabilities divide the dialogues' own. `recalibrate` False: the unmodified run's
        reference scores divide every run's, so the decision rule stays fixed and a masked run
        computes only `dialogues`; True: the reference rows are recomputed under every mask.
        `shared_attention`: the prefix and dialogue passes through `shared_prefix_attention` (None:
        where available, i.e. on a CPU); False: concatenated keys/values and an explicit mask."""
        if method not in ("score", "generate"):
            raise ValueError(f"method {method!r}: allowed: score, generate")
        if reference and method != "score":
            raise ValueError("calibration reference dialogues need method score")
        self.lm, self.prompt, self.method = lm, prompt, method
        available = shared_prefix_available(lm)
        if shared_attention and not available:
            raise ValueError("shared_attention needs a CPU model and torch's CPU flash attention")
        self.shared_attention = available if shared_attention is None else shared_attention
        self.max_new_tokens = max_new_tokens
        self.n_layers = len(decoder_layers(lm.model))
        device = lm.device
        tokenizer = lm.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.eos_ids = {i for i in (tokenizer.eos_token_id, getattr(lm.model.generation_config, "eos_token_id", None)) if isinstance(i, int)}
        rows = [[*dialogue_ids(tokenizer, d), *prompt.suffix] for d in [*dialogues, *reference]]
        self.n = len(dialogues)
        self.n_rows = len(rows)
        self.recalibrate = recalibrate
        self.fixed_reference: Tensor | None = None  # the unmodified run's reference scores
        self.prefix_ids = torch.tensor([prompt.prefix], dtype=torch.long, device=device)
        self.labels = label_ids(tokenizer, label_format)
        # Label continuations: tokens l_1..l_{m-1} of every multi-token label, one segment each.
        self.multi = [j for j, ids in enumerate(self.labels) if len(ids) > 1]
        self.continuation = [tok for j in self.multi for tok in self.labels[j][:-1]]
        self.segment = torch.tensor([s for s, j in enumerate(self.multi) for _ in self.labels[j][:-1]], dtype=torch.long, device=device)
        # Reference rows get batches of their own, so a masked run with a fixed prior skips them.
        self.batches: list[_Batch] = []
        for first, stop in ((0, self.n), (self.n, self.n_rows)):
            for bucket in length_buckets([len(r) for r in rows[first:stop]], batch_size):
                members = [first + i for i in bucket]
                width = max(len(rows[i]) for i in members)
                ids = torch.full((len(members), width), self.pad_id, dtype=torch.long, device=device)
                for b, i in enumerate(members):
                    ids[b, : len(rows[i])] = torch.tensor(rows[i], dtype=torch.long, device=device)
                lengths = torch.tensor([len(rows[i]) for i in members], dtype=torch.long, device=device)
                valid = torch.arange(width, device=device).unsqueeze(0) < lengths.unsqueeze(1)
                self.batches.append(_Batch(members, ids, lengths, real_token_index(valid),
                                             torch.arange(len(members), device=device) * width + lengths - 1, reference=first > 0))
        # Boundary 0 is the embeddings, recomputed for free; generate decodes new tokens through
        # every layer, which needs all layers' keys/values, so it always runs from layer 0.
        self.boundaries = sorted({int(k) for k in boundaries if 0 < int(k) < self.n_layers}) if method == "score" else []
        self.row_ids = rows
        self.fallback = self._fallback_reason(rows)
        if self.fallback is not None:
            # The plain path: the model's own forward on each full prompt; no layer reuse.
            self.boundaries, self.shared_attention = [], False
            warnings.warn(f"mask-eval: {self.fallback}; classifying with the model's own forward on every full prompt "
                          "(exact, slower)", stacklevel=2)
        self.prefix_boundary: dict[int, Tensor] = {}
        self.prepared = False
        self.layer_tokens = 0
        extra = len(self.continuation) if method == "score" else max_new_tokens - 1
        # A naive run from scratch: the full prompt of every row it needs, through all layers.
        naive = [len(prompt.prefix) + len(r) + extra for r in rows]
        self.naive_unmodified = sum(naive)
        self.naive_masked = sum(naive) if recalibrate else sum(naive[: self.n])

    @property
    def engine(self) -> str:
        """`layered` (the prefix once, layer reuse) or `plain` (the model's own forward per full prompt)."""
        return "layered" if self.fallback is None else "plain"

    def _fallback_reason(self, rows: Sequence[Sequence[int]]) -> str | None:
        """Why the layer-by-layer engine cannot serve this model and these rows (None: it can)."""
        adapter = model_adapter(self.lm.model)
        problem = adapter.fast_engine_problem()
        window = adapter.sliding_window
        if problem is None and window is not None and rows:
            after = max((len(ids) - 1 for ids in self.labels), default=0) if self.method == "score" else self.max_new_tokens - 1
            longest = self.prefix_ids.shape[1] + max(len(r) for r in rows) + after
            # The engine's attention sees every earlier key: exact only while no row outgrows the window.
            if longest > window:
                problem = f"prompts of up to {longest} tokens outgrow the model's sliding attention window ({window})"
        return problem

    def naive_tokens(self, masked_runs: int) -> int:
        """Full-model tokens of the unmodified run and `masked_runs` masked runs, each from scratch."""
        return self.naive_unmodified + masked_runs * self.naive_masked

    # -- pieces -------------------------------------------------------------------------------

    def _embed(self, ids: Tensor) -> Tensor:
        return model_adapter(self.lm.model).embed(ids)

    def _prefix(self, start: int, keep: Iterable[int] = ()) -> tuple[dict[int, tuple[Tensor, Tensor]], dict[int, Tensor]]:
        p = self.prefix_ids.shape[1]
        hidden = self._embed(self.prefix_ids) if start == 0 else self.prefix_boundary[start]
        positions = torch.arange(p, device=hidden.device).unsqueeze(0)
        if self.shared_attention:
            mask = None  # causal
        else:
            mask = additive_mask(torch.ones(p, p, dtype=torch.bool, device=hidden.device).tril().unsqueeze(0), hidden.dtype)
        _, store, kept = run_layers(self.lm, hidden, positions, mask, range(start, self.n_layers), keep=keep,
                                    read=positions.new_zeros(0))
        self.layer_tokens += p * (self.n_layers - start)
        return store.new, kept

    def _dialogue(self, batch: _Batch, start: int, prefix_kv, keep: Iterable[int] = ()):
        """Dialogue+suffix tokens over the prefix: (last-position hidden [B, H], dialogue kv, kept)."""
        p = self.prefix_ids.shape[1]
        b, t = batch.ids.shape
        hidden = self._embed(batch.ids) if start == 0 else batch.boundary[start]
        device = hidden.device
        positions = (p + torch.arange(t, device=device)).unsqueeze(0)
        layers = range(start, self.n_layers)
        if self.shared_attention:
            out, store, kept = run_layers(self.lm, hidden, positions, None, layers, keep=keep, shared=prefix_kv, real=batch.real,
                                          read=batch.last)
        else:
            causal = torch.ones(t, t, dtype=torch.bool, device=device).tril()
            allowed = torch.cat([torch.ones(t, p, dtype=torch.bool, device=device), causal], dim=1).unsqueeze(0)
            out, store, kept = run_layers(self.lm, hidden, positions, additive_mask(allowed, hidden.dtype), layers, past=prefix_kv,
                                          keep=keep, real=batch.real, read=batch.last)
        self.layer_tokens += b * t * (self.n_layers - start)
        last = out[torch.arange(b, device=device), batch.lengths - 1]
        return last, store.new, kept

    def _past(self, prefix_kv, dialogue_kv, start: int, batch_size: int) -> dict[int, tuple[Tensor, Tensor]]:
        past = {}
        for layer in range(start, self.n_layers):
            (pk, pv), (dk, dv) = prefix_kv[layer], dialogue_kv[layer]
            past[layer] = (torch.cat([pk.expand(batch_size, -1, -1, -1), dk], 2), torch.cat([pv.expand(batch_size, -1, -1, -1), dv], 2))
        return past

    def _key_validity(self, batch: _Batch) -> Tensor:
        """[B, P + T]: prefix keys always, dialogue keys up to each row's length."""
        p = self.prefix_ids.shape[1]
        t = batch.ids.shape[1]
        device = batch.ids.device
        dialogue = torch.arange(t, device=device).unsqueeze(0) < batch.lengths.unsqueeze(1)
        return torch.cat([torch.ones(len(batch.rows), p, dtype=torch.bool, device=device), dialogue], dim=1)

    def _continuation(self, batch: _Batch, start: int, prefix_kv, dialogue_kv, keep: Iterable[int] = ()):
        """Log-probs of every multi-token label's tokens after the first: [B, n_multi] sums."""
        b = len(batch.rows)
        c = len(self.continuation)
        device = batch.ids.device
        ids = torch.tensor(self.continuation, dtype=torch.long, device=device).expand(b, c)
        hidden = self._embed(ids) if start == 0 else batch.continuation_boundary[start]
        # Each label's segment starts right after the row's last real token.
        offsets = torch.cat([torch.arange(len(self.labels[j]) - 1, device=device) for j in self.multi])
        positions = self.prefix_ids.shape[1] + batch.lengths.unsqueeze(1) + offsets.unsqueeze(0)
        same = self.segment.unsqueeze(1) == self.segment.unsqueeze(0)
        causal = torch.ones(c, c, dtype=torch.bool, device=device).tril() & same
        allowed = torch.cat([self._key_validity(batch).unsqueeze(1).expand(b, c, -1), causal.unsqueeze(0).expand(b, c, c)], dim=2)
        past = self._past(prefix_kv, dialogue_kv, start, b)
        out, _, kept = run_layers(self.lm, hidden, positions, additive_mask(allowed, hidden.dtype), range(start, self.n_layers), past=past, keep=keep)
        self.layer_tokens += b * c * (self.n_layers - start)
        logprobs = last_logprobs(self.lm, out)  # [B, c, V]
        targets = torch.tensor([tok for j in self.multi for tok in self.labels[j][1:]], dtype=torch.long, device=device)
        picked = logprobs.gather(2, targets.expand(b, c).unsqueeze(2)).squeeze(2)  # [B, c]
        sums = torch.zeros(b, len(self.multi), dtype=picked.dtype, device=device)
        sums.index_add_(1, self.segment, picked)
        return sums, kept

    def _generate(self, batch: _Batch, first: Tensor, prefix_kv, dialogue_kv) -> list[tuple[str, bool]]:
        """Greedy decoding from the first answer token; stops at EOS or max_new_tokens. Per row:
        the answer and whether it was cut off (max_new_tokens reached with no EOS)."""
        b = len(batch.rows)
        device = batch.ids.device
        past = self._past(prefix_kv, dialogue_kv, 0, b)
        validity = self._key_validity(batch)
        tokens = [first]
        eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long, device=device)
        done = torch.isin(first, eos)
        for step in range(1, self.max_new_tokens):
            if bool(done.all()):
                break
            hidden = self._embed(tokens[-1].unsqueeze(1))
            positions = (self.prefix_ids.shape[1] + batch.lengths + step - 1).unsqueeze(1)
            allowed = torch.cat([validity, torch.ones(b, step, dtype=torch.bool, device=device)], dim=1).unsqueeze(1)
            out, store, _ = run_layers(self.lm, hidden, positions, additive_mask(allowed, hidden.dtype), range(self.n_layers), past=past, append=True)
            past = store.past
            self.layer_tokens += b * self.n_layers
            nxt = last_logprobs(self.lm, out[:, -1]).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            tokens.append(nxt)
            done = done | torch.isin(nxt, eos)
        generated = torch.stack(tokens, dim=1).tolist()
        answers = []
        for row in generated:
            cut = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
            answers.append((self.lm.tokenizer.decode(row[:cut], skip_special_tokens=True), cut is None))
        return answers

    # -- the plain path -----------------------------------------------------------------------

    def _plain_scores(self, batch: _Batch) -> Tensor:
        """[B, 6] label log-likelihoods from the model's own forward: per row, prefix + row (whose
        last position scores every label's first token) and prefix + row + each multi-token
        label but its last token; all sequences right-padded into one call."""
        adapter = model_adapter(self.lm.model)
        prefix = self.prefix_ids[0].tolist()
        sequences: list[list[int]] = []
        picks: list[tuple[int, int, int, int, int]] = []  # (sequence, position, token, row in batch, label)
        for b, row in enumerate(batch.rows):
            context = [*prefix, *self.row_ids[row]]
            sequences.append(context)
            for j, label in enumerate(self.labels):
                if len(label) == 1:
                    picks.append((len(sequences) - 1, len(context) - 1, label[0], b, j))
            for j in self.multi:
                sequences.append([*context, *self.labels[j][:-1]])
                picks += [(len(sequences) - 1, len(context) - 1 + t, tok, b, j) for t, tok in enumerate(self.labels[j])]
        device = self.prefix_ids.device
        width = max(map(len, sequences))
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long, device=device)
        attention = torch.zeros((len(sequences), width), dtype=torch.long, device=device)
        for s, seq in enumerate(sequences):
            ids[s, : len(seq)] = torch.tensor(seq, dtype=torch.long, device=device)
            attention[s, : len(seq)] = 1
        hidden = self.lm.model.model(input_ids=ids, attention_mask=attention, use_cache=False).last_hidden_state
        self.layer_tokens += sum(map(len, sequences)) * self.n_layers
        seq_index, position, token, row, label = (torch.tensor(column, dtype=torch.long, device=device) for column in zip(*picks))
        logprobs = torch.log_softmax(adapter.logits(hidden[seq_index, position], normed=True).float(), dim=-1)
        picked = logprobs.gather(1, token.unsqueeze(1)).squeeze(1)
        scores = torch.zeros(len(batch.rows), len(EMOTIONS), dtype=picked.dtype, device=device)
        return scores.index_put_((row, label), picked, accumulate=True)

    def _plain_generate(self, row: int) -> tuple[str, bool]:
        """Greedy decoding of one row by the model's own generate (batch 1: no padding): the
        answer and whether it was cut off (no EOS)."""
        ids = torch.tensor([[*self.prefix_ids[0].tolist(), *self.row_ids[row]]], dtype=torch.long, device=self.prefix_ids.device)
        out = self.lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens, do_sample=False,
                                     eos_token_id=sorted(self.eos_ids) or None, pad_token_id=self.pad_id)
        new = out[0, ids.shape[1]:].tolist()
        self.layer_tokens += (ids.shape[1] + max(len(new) - 1, 0)) * self.n_layers
        cut = next((i for i, t in enumerate(new) if t in self.eos_ids), None)
        return self.lm.tokenizer.decode(new[:cut], skip_special_tokens=True), cut is None

    # -- runs ---------------------------------------------------------------------------------

    def start_layer(self, neurons: Mapping[int, Tensor]) -> int:
        """The deepest kept boundary at or below the first masked layer (0 before the unmodified run)."""
        layers = [int(layer) for layer, idx in neurons.items() if idx.numel()]
        if not layers or not self.prepared:
            return 0
        first = min(layers)
        return max([k for k in self.boundaries if k <= first], default=0)

    @torch.inference_mode()
    def classify(self, neurons: Mapping[int, Tensor] | None = None, progress=None) -> Classification:
        """All dialogues under `neurons` masked (None or empty: unmodified)."""
        neurons = {int(k): v for k, v in (neurons or {}).items() if v.numel()}
        unmodified = not neurons
        fixed = self.n_rows > self.n and not self.recalibrate and not unmodified
        if fixed and self.fixed_reference is None:
            self.classify()  # the fixed prior comes from the unmodified run
        batches = [batch for batch in self.batches if not (fixed and batch.reference)]
        keep = self.boundaries if unmodified and not self.prepared else []
        start = self.start_layer(neurons)
        before = self.layer_tokens
        # Label scores stay on the model's device until the run ends: no copy (and no sync) per batch.
        on_device: list[tuple[list[int], Tensor]] = []
        answers: list[str] = [""] * self.n_rows
        cut_off: list[bool] = [False] * self.n_rows
        with mask_neurons(self.lm.model, neurons):
            if self.fallback is not None:
                for batch in batches:
                    if self.method == "score":
                        on_device.append((batch.rows, self._plain_scores(batch)))
                    else:
                        for row in batch.rows:
                            answers[row], cut_off[row] = self._plain_generate(row)
                    if progress is not None:
                        progress.update(1)
            else:
                prefix_kv, kept = self._prefix(start, keep=keep)
                if keep:
                    self.prefix_boundary = kept
                for batch in batches:
                    last, dialogue_kv, kept = self._dialogue(batch, start, prefix_kv, keep=keep)
                    first = last_logprobs(self.lm, last)  # [B, V]
                    if keep:
                        batch.boundary = kept
                    if self.method == "score":
                        label_scores = torch.stack([first[:, ids[0]] for ids in self.labels], dim=1)
                        if self.multi:
                            sums, kept = self._continuation(batch, start, prefix_kv, dialogue_kv, keep=keep)
                            if keep:
                                batch.continuation_boundary = kept
                            label_scores[:, self.multi] += sums
                        on_device.append((batch.rows, label_scores))
                    else:
                        for row, (answer, cut) in zip(batch.rows, self._generate(batch, first.argmax(-1), prefix_kv, dialogue_kv)):
                            answers[row], cut_off[row] = answer, cut
                    if progress is not None:
                        progress.update(1)
        if keep:
            self.prepared = True
        computed = round((self.layer_tokens - before) / self.n_layers)
        naive = self.naive_unmodified if unmodified else self.naive_masked
        if self.method == "score":
            scores = torch.full((self.n_rows, len(EMOTIONS)), float("nan"))
            if on_device:
                scores[[row for rows, _ in on_device for row in rows]] = torch.cat([part for _, part in on_device]).cpu()
            own, reference = scores[: self.n], scores[self.n :]
            if unmodified:
                self.fixed_reference = reference
            elif fixed:
                reference = self.fixed_reference
            if len(reference):
                own = calibrate_scores(own, reference)
            predicted: list[str | None] = [EMOTIONS[int(i)] for i in own.argmax(dim=1)]
            return Classification(predicted, own, computed, naive, reference_scores=reference if len(reference) else None)
        return Classification([parse_emotion(a) for a in answers], None, computed, naive, answers, cut_off=cut_off)


def classify(
    lm: LoadedModel,
    prompt: ChatPrompt,
    dialogues: Sequence[str],
    method: Method,
    *,
    batch_size: int,
    max_new_tokens: int = 8,
    neurons: Mapping[int, Tensor] | None = None,
    desc: str = "",
    label_format: str = "bare",
    reference: Sequence[str] = (),
) -> Classification:
    """Classify `dialogues` with `prompt` (score: highest label log-likelihood; generate: first
    emotion word of the greedy answer, None when there is none), optionally with `neurons` masked."""
    engine = MaskedClassifier(lm, prompt, dialogues, method, batch_size=batch_size, max_new_tokens=max_new_tokens,
                              label_format=label_format, reference=reference)
    if not desc:
        return engine.classify(neurons)
    from tqdm import tqdm

    with tqdm(total=len(engine.batches), desc=desc, unit="batch", file=sys.stderr) as bar:
        return engine.classify(neurons, progress=bar)
