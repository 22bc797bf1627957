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

The layers run one by one (evaluate/layer_runner.py), the prefix and dialogue passes with the
shared-prefix attention (evaluate/shared_prefix_attention.py; Gemma 2's soft-capped attention takes
concatenated keys/values and the model's own attention instead); a sliding-window layer (Gemma 3's
local ones) sees only its window of prefix and dialogue on both. tests/unit/model/test_families.py pins each
family of architecture.FAMILIES against the model's own forward. A model the engine cannot serve
(another family) is classified by the plain path
(evaluate/plain_classify.py): the model's own forward on every full prompt, said once as a warning.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import get_args

import torch
from torch import Tensor

from emoneurons.emotions import EMOTIONS, parse_emotion
from emoneurons.evaluate.boundary_states import BoundaryStates, StateBlocks
from emoneurons.evaluate.layer_runner import (
    additive_mask,
    key_validity,
    last_logprobs,
    prefixed_past,
    run_layers,
    shared_prefix_available,
)
from emoneurons.evaluate.plain_classify import layered_engine_problem, plain_generate, plain_label_scores
from emoneurons.model.architecture import decoder_layers, model_adapter
from emoneurons.model.batching import length_buckets, padded_ids, real_token_index
from emoneurons.model.loading import LoadedModel
from emoneurons.model.special_tokens import eos_token_ids, pad_token_id
from emoneurons.neurons.masking import mask_neurons, scale_neurons
from emoneurons.params import ClassifyMethod, allowed_values
from emoneurons.text.chat_prompt import ChatPrompt, dialogue_ids, label_ids


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


def tokens_after_row(labels: Sequence[Sequence[int]], method: ClassifyMethod, max_new_tokens: int) -> int:
    """What a naive run feeds after a row's prompt: every multi-token label's tokens but its last
    (score), or the answer's tokens but its last (generate)."""
    return sum(len(ids) - 1 for ids in labels if len(ids) > 1) if method == "score" else max_new_tokens - 1


def naive_tokens(prefix: int, rows: Sequence[int], reference: Sequence[int], after: int, *, masked_runs: int,
                 recalibrate: bool) -> int:
    """Full-model tokens of the unmodified run and `masked_runs` masked runs each from scratch:
    every row's full prompt (`prefix` + its length + `after`) through all layers; the reference
    rows (calibration) again under each mask only when recalibrated."""
    test = sum(prefix + length + after for length in rows)
    ref = sum(prefix + length + after for length in reference)
    return test + ref + masked_runs * (test + (ref if recalibrate else 0))


@dataclass(frozen=True)
class Mask:
    """What one masked run does: the down_proj inputs {layer: indices} multiplied by `scale` on
    every token (0: zeroed, the paper's mask; 0 < scale < 1: graded masking)."""

    neurons: Mapping[int, Tensor]
    scale: float = 0.0


@dataclass
class _Batch:
    rows: list[int]
    ids: Tensor  # [B, T] right-padded dialogue + suffix
    lengths: Tensor  # [B]
    real: Tensor | None  # flat positions of the real tokens (None: no padding)
    last: Tensor  # flat positions of each row's last real token (the only ones read at the end)
    reference: bool = False  # calibration rows (see `MaskedClassifier.recalibrate`)
    boundary: Mapping[int, Tensor] = field(default_factory=dict)  # unmodified hidden entering layer k (boundary_states.py)
    continuation_boundary: Mapping[int, Tensor] = field(default_factory=dict)


class MaskedClassifier:
    """One prompt and one set of dialogues, classified under any number of masks.

    Call `classify()` (unmodified) first: it keeps the hidden states entering the layers in
    `boundaries`, which later masked calls start from when their mask touches no layer below."""

    def __init__(
        self,
        lm: LoadedModel,
        prompt: ChatPrompt,
        dialogues: Sequence[str],
        method: ClassifyMethod,
        *,
        batch_size: int,
        max_new_tokens: int,
        boundaries: Iterable[int] = (),
        label_format: str,
        reference: Sequence[str] = (),
        recalibrate: bool,
        shared_attention: bool | None = None,
    ) -> None:
        """`reference`: dialogues (a content-free one, or train dialogues) whose mean label
        probabilities divide the dialogues' own. `recalibrate` False: the unmodified run's
        reference scores divide every run's, so the decision rule stays fixed and a masked run
        computes only `dialogues`; True: the reference rows are recomputed under every mask.
        `shared_attention`: the prefix and dialogue passes through `shared_prefix_attention` (None:
        where available: any device, not Gemma 2's soft-capped attention); False: concatenated
        keys/values and an explicit mask."""
        if method not in get_args(ClassifyMethod):
            raise ValueError(f"method {method!r}: allowed: {allowed_values(ClassifyMethod)}")
        if reference and method != "score":
            raise ValueError("calibration reference dialogues need method score")
        self.lm, self.prompt, self.method = lm, prompt, method
        available = shared_prefix_available(lm)
        if shared_attention and not available:
            raise ValueError("shared_attention needs transformers' AttentionInterface and attention without logit soft-capping")
        self.shared_attention = available if shared_attention is None else shared_attention
        self.max_new_tokens = max_new_tokens
        self.n_layers = len(decoder_layers(lm.model))
        tokenizer = lm.tokenizer
        self.pad_id = pad_token_id(tokenizer)
        self.eos_ids = set(eos_token_ids(lm))
        rows = [[*dialogue_ids(tokenizer, d), *prompt.suffix] for d in [*dialogues, *reference]]
        self.n = len(dialogues)
        self.n_rows = len(rows)
        self.recalibrate = recalibrate
        self.fixed_reference: Tensor | None = None  # the unmodified run's reference scores
        # Token ids and the per-row index tensors start on the embedding's device; whatever meets a
        # layer, the FFN row hooks or lm_head's output is put on that one's device where it meets it
        # (a device map, `model.device: auto`, spreads them over several devices).
        self.input_device = model_adapter(lm.model).input_device()
        self.prefix_ids = torch.tensor([prompt.prefix], dtype=torch.long, device=self.input_device)
        self._set_labels(label_format)
        self.batches = self._batches(rows, batch_size)
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
        # A naive run from scratch: the full prompt of every row it needs, through all layers.
        lengths = [len(r) for r in rows]
        after = tokens_after_row(self.labels, method, max_new_tokens)
        self.naive_unmodified = naive_tokens(len(prompt.prefix), lengths[: self.n], lengths[self.n :], after,
                                             masked_runs=0, recalibrate=recalibrate)
        self.naive_masked = self.naive_unmodified if recalibrate else naive_tokens(len(prompt.prefix), lengths[: self.n], [], after,
                                                                                  masked_runs=0, recalibrate=False)

    def _set_labels(self, label_format: str) -> None:
        """The six labels' token ids, and the continuation pass's: tokens l_1..l_{m-1} of every
        multi-token label, one segment each."""
        self.labels = label_ids(self.lm.tokenizer, label_format)
        self.multi = [j for j, ids in enumerate(self.labels) if len(ids) > 1]
        self.continuation = [tok for j in self.multi for tok in self.labels[j][:-1]]
        self.segment = torch.tensor([s for s, j in enumerate(self.multi) for _ in self.labels[j][:-1]], dtype=torch.long,
                                    device=self.input_device)

    def _batches(self, rows: Sequence[Sequence[int]], batch_size: int) -> list[_Batch]:
        """Length-bucketed, right-padded batches; the reference rows get batches of their own, so a
        masked run with a fixed prior skips them."""
        device = self.input_device
        batches: list[_Batch] = []
        for first, stop in ((0, self.n), (self.n, self.n_rows)):
            for bucket in length_buckets([len(r) for r in rows[first:stop]], batch_size):
                members = [first + i for i in bucket]
                padded = padded_ids([rows[i] for i in members], self.pad_id, "right", device)
                width = padded.ids.shape[1]
                lengths = torch.tensor([len(rows[i]) for i in members], dtype=torch.long, device=device)
                batches.append(_Batch(members, padded.ids, lengths, real_token_index(padded.valid),
                                      torch.arange(len(members), device=device) * width + lengths - 1, reference=first > 0))
        return batches

    @property
    def engine(self) -> str:
        """`layered` (the prefix once, layer reuse) or `plain` (the model's own forward per full prompt)."""
        return "layered" if self.fallback is None else "plain"

    def _fallback_reason(self, rows: Sequence[Sequence[int]]) -> str | None:
        """Why the layer-by-layer engine cannot serve this model and these rows (None: it can)."""
        after = max((len(ids) - 1 for ids in self.labels), default=0) if self.method == "score" else self.max_new_tokens - 1
        longest = self.prefix_ids.shape[1] + max((len(r) for r in rows), default=0) + after
        return layered_engine_problem(self.lm, longest if rows else 0)

    def naive_tokens(self, masked_runs: int) -> int:
        """Full-model tokens of the unmodified run and `masked_runs` masked runs, each from scratch."""
        return self.naive_unmodified + masked_runs * self.naive_masked

    # -- pieces -------------------------------------------------------------------------------

    def _embed(self, ids: Tensor) -> Tensor:
        return model_adapter(self.lm.model).embed(ids)

    def _prefix(self, start: int, keep: Iterable[int] = ()) -> tuple[dict[int, tuple[Tensor, Tensor]], dict[int, Tensor]]:
        p = self.prefix_ids.shape[1]
        hidden = self._embed(self.prefix_ids) if start == 0 else self.prefix_boundary[start]
        # Positions on the input device, whatever device the kept hidden states sit on: the rotary
        # embedding reads them where it sits (model/architecture.py).
        positions = torch.arange(p, device=self.input_device).unsqueeze(0)
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
        positions = (p + torch.arange(t, device=self.input_device)).unsqueeze(0)
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
        # The last layer may sit on another device than the embeddings (`model.device: auto`).
        last = out[torch.arange(b, device=out.device), batch.lengths.to(out.device) - 1]
        return last, store.new, kept

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
        allowed = torch.cat([key_validity(self.prefix_ids.shape[1], batch.lengths, batch.ids.shape[1]).unsqueeze(1).expand(b, c, -1), causal.unsqueeze(0).expand(b, c, c)], dim=2)
        past = prefixed_past(prefix_kv, dialogue_kv, range(start, self.n_layers), b)
        # Keys: the prefix's and the padded rows' at their positions, then the segments' own.
        keys = torch.cat([torch.arange(allowed.shape[2] - c, device=device).expand(b, -1), positions], dim=1)
        out, _, kept = run_layers(self.lm, hidden, positions, additive_mask(allowed, hidden.dtype), range(start, self.n_layers), past=past,
                                  keep=keep, key_positions=keys)
        self.layer_tokens += b * c * (self.n_layers - start)
        logprobs = last_logprobs(self.lm, out)  # [B, c, V], on lm_head's device
        targets = torch.tensor([tok for j in self.multi for tok in self.labels[j][1:]], dtype=torch.long, device=logprobs.device)
        picked = logprobs.gather(2, targets.expand(b, c).unsqueeze(2)).squeeze(2)  # [B, c]
        sums = torch.zeros(b, len(self.multi), dtype=picked.dtype, device=picked.device)
        sums.index_add_(1, self.segment.to(picked.device), picked)
        return sums, kept

    def _generate(self, batch: _Batch, first: Tensor, prefix_kv, dialogue_kv) -> list[tuple[str, bool]]:
        """Greedy decoding from the first answer token; stops at EOS or max_new_tokens. Per row:
        the answer and whether it was cut off (max_new_tokens reached with no EOS)."""
        b = len(batch.rows)
        device = batch.ids.device
        past = prefixed_past(prefix_kv, dialogue_kv, range(self.n_layers), b)
        validity = key_validity(self.prefix_ids.shape[1], batch.lengths, batch.ids.shape[1])
        tokens = [first]
        eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long, device=first.device)  # lm_head's device
        done = torch.isin(first, eos)
        for step in range(1, self.max_new_tokens):
            if bool(done.all()):
                break
            hidden = self._embed(tokens[-1].unsqueeze(1))
            positions = (self.prefix_ids.shape[1] + batch.lengths + step - 1).unsqueeze(1)
            allowed = torch.cat([validity, torch.ones(b, step, dtype=torch.bool, device=device)], dim=1).unsqueeze(1)
            keys = torch.cat([torch.arange(validity.shape[1], device=device).expand(b, -1),
                              positions - step + 1 + torch.arange(step, device=device)], dim=1)
            out, store, _ = run_layers(self.lm, hidden, positions, additive_mask(allowed, hidden.dtype), range(self.n_layers), past=past,
                                       append=True, key_positions=keys)
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
        """[B, 6] label log-likelihoods from the model's own forward on each row's full prompt."""
        prefix = self.prefix_ids[0].tolist()
        scores, fed = plain_label_scores(self.lm, [[*prefix, *self.row_ids[row]] for row in batch.rows], self.labels, self.pad_id)
        self.layer_tokens += fed * self.n_layers
        return scores

    def _plain_generate(self, row: int) -> tuple[str, bool]:
        """Greedy decoding of one row by the model's own generate: the answer and whether it was
        cut off (no EOS)."""
        context = [*self.prefix_ids[0].tolist(), *self.row_ids[row]]
        answer, cut, fed = plain_generate(self.lm, context, self.max_new_tokens, self.eos_ids, self.pad_id)
        self.layer_tokens += fed * self.n_layers
        return answer, cut

    # -- runs ---------------------------------------------------------------------------------

    def start_layer(self, neurons: Mapping[int, Tensor]) -> int:
        """The deepest kept boundary at or below the first masked layer (0 before the unmodified run)."""
        layers = [int(layer) for layer, idx in neurons.items() if idx.numel()]
        if not layers or not self.prepared:
            return 0
        first = min(layers)
        return max([k for k in self.boundaries if k <= first], default=0)

    @torch.inference_mode()
    def classify(self, neurons: Mapping[int, Tensor] | None = None, progress=None, *, scale: float = 0.0) -> Classification:
        """All dialogues under `neurons` masked (None or empty: unmodified); `scale`: their
        activations multiplied by it instead of zeroed."""
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
        with mask_neurons(self.lm.model, neurons) if scale == 0 else scale_neurons(self.lm.model, neurons, scale):
            if self.fallback is not None:
                self._run_plain(batches, on_device, answers, cut_off, progress)
            else:
                self._run_layered(batches, start, keep, on_device, answers, cut_off, progress)
        if keep:
            self.prepared = True
        computed = round((self.layer_tokens - before) / self.n_layers)
        naive = self.naive_unmodified if unmodified else self.naive_masked
        if self.method == "score":
            return self._scored(on_device, unmodified, fixed, computed, naive)
        return Classification([parse_emotion(a) for a in answers], None, computed, naive, answers, cut_off=cut_off)

    def _run_plain(self, batches: Sequence[_Batch], on_device: list, answers: list[str], cut_off: list[bool],
                   progress) -> None:
        for batch in batches:
            if self.method == "score":
                on_device.append((batch.rows, self._plain_scores(batch)))
            else:
                for row in batch.rows:
                    answers[row], cut_off[row] = self._plain_generate(row)
            if progress is not None:
                progress.update(1)

    def _run_layered(self, batches: Sequence[_Batch], start: int, keep: Sequence[int], on_device: list, answers: list[str],
                     cut_off: list[bool], progress) -> None:
        """The prefix once, then every batch from layer `start`; the states entering `keep` kept."""
        prefix_kv, kept = self._prefix(start, keep=keep)
        if keep:
            self.prefix_boundary = kept
        blocks = StateBlocks() if keep else None  # the CPU's states, packed (boundary_states.py)
        for batch in batches:
            last, dialogue_kv, kept = self._dialogue(batch, start, prefix_kv, keep=keep)
            first = last_logprobs(self.lm, last)  # [B, V]
            if keep:
                batch.boundary = BoundaryStates(kept, blocks)  # on a GPU: in host memory, one batch back at a time
            if self.method == "score":
                label_scores = torch.stack([first[:, ids[0]] for ids in self.labels], dim=1)
                if self.multi:
                    sums, kept = self._continuation(batch, start, prefix_kv, dialogue_kv, keep=keep)
                    if keep:
                        batch.continuation_boundary = BoundaryStates(kept, blocks)
                    label_scores[:, self.multi] += sums
                on_device.append((batch.rows, label_scores))
            else:
                for row, (answer, cut) in zip(batch.rows, self._generate(batch, first.argmax(-1), prefix_kv, dialogue_kv)):
                    answers[row], cut_off[row] = answer, cut
            if progress is not None:
                progress.update(1)

    def _scored(self, on_device: list[tuple[list[int], Tensor]], unmodified: bool, fixed: bool, computed: int,
                naive: int) -> Classification:
        """The run's label scores on the CPU, calibrated by the reference rows (the unmodified run's
        when the prior is fixed), and the argmax labels."""
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


def classify(
    lm: LoadedModel,
    prompt: ChatPrompt,
    dialogues: Sequence[str],
    method: ClassifyMethod,
    *,
    batch_size: int,
    max_new_tokens: int,
    neurons: Mapping[int, Tensor] | None = None,
    desc: str = "",
    label_format: str,
    reference: Sequence[str] = (),
) -> Classification:
    """Classify `dialogues` with `prompt` (score: highest label log-likelihood; generate: first
    emotion word of the greedy answer, None when there is none), optionally with `neurons` masked."""
    engine = MaskedClassifier(lm, prompt, dialogues, method, batch_size=batch_size, max_new_tokens=max_new_tokens,
                              label_format=label_format, reference=reference, recalibrate=False)
    if not desc:
        return engine.classify(neurons)
    from tqdm import tqdm

    with tqdm(total=len(engine.batches), desc=desc, unit="batch", file=sys.stderr) as bar:
        return engine.classify(neurons, progress=bar)
