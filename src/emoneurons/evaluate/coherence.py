"""How coherent generated replies are, measured beside steering's shifts so that a shift made of
broken text reads as such. Two measures per reply, each a plain function here:

- **log-likelihood per token** (`reply_logp_per_token`): the unmodified model's mean log p of the
  reply's tokens, teacher-forced after the very prompt the reply answered. A model's own greedy
  replies score high under it; "ready for a PI PI PI" scores far lower. The reply is the text the
  record keeps (decoded and stripped), tokenized again; a reply of no tokens has none (None).
- **repeated n-gram share** (`repeated_ngram_share`): of the reply's word n-grams, the share that
  repeat an earlier one in the same reply, 1 - distinct / total (Welleck et al. 2019's rep-n, on
  words, `reply_words`, so that the number means the same whatever the model's tokenizer). A reply
  of fewer than n words repeats nothing: 0.

`text_broke` turns the two into the verdict the report prints beside a shift.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from emoneurons.model.architecture import model_adapter
from emoneurons.model.batching import length_buckets, padded_ids
from emoneurons.model.compat import cache_keyword
from emoneurons.model.loading import LoadedModel
from emoneurons.model.special_tokens import pad_token_id
from emoneurons.text.prompt_format import ResolvedPromptFormat, prompt_text

_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def reply_words(text: str) -> list[str]:
    """The words repetition is counted on, lowercase: runs of letters and digits (with inner
    apostrophes: "i'm"), and each other visible character on its own, so that "🍏🍏🍏🍏" repeats as
    "da da da" does; spacing dropped."""
    return _WORD.findall(text.lower())


def repeated_ngram_share(tokens: Sequence[Hashable], n: int) -> float:
    """The share of the n-grams of `tokens` that repeat an earlier n-gram of the same sequence
    (1 - distinct / total); 0.0 when there are fewer than n tokens (no n-gram, nothing repeated)."""
    if n < 1:
        raise ValueError(f"n-gram size {n}: allowed: 1 or more")
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def mean_target_logp(logits: Tensor, targets: Tensor, rows: Tensor, n_rows: int) -> Tensor:
    """[n_rows] mean log-softmax of `logits` [N, V] at `targets` [N], averaged per row of `rows`
    [N] (which reply each scored position belongs to); NaN for a row with no position."""
    picked = torch.log_softmax(logits.float(), dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)
    total = torch.zeros(n_rows, dtype=picked.dtype, device=picked.device).index_add_(0, rows, picked)
    count = torch.zeros(n_rows, dtype=picked.dtype, device=picked.device).index_add_(0, rows, torch.ones_like(picked))
    return total / count


@torch.inference_mode()
def reply_logp_per_token(lm: LoadedModel, contexts: Sequence[Sequence[int]], replies: Sequence[Sequence[int]], *,
                         batch_size: int, pad_id: int) -> list[float | None]:
    """Per (context, reply) pair of token ids: the model's mean log p of the reply's tokens after
    its context (None for an empty reply). Steering's replies answer a few prompts, so each distinct
    context is fed once and its key/value cache (the model's own) reused for its replies, which are
    fed in right-padded batches of similar length; the final norm and lm_head run only where a reply
    token is predicted. Hooks on the model apply: call it with none for the unmodified model."""
    if any(not context for context in contexts):
        raise ValueError("reply_logp_per_token: an empty context (nothing to predict a reply's first token from)")
    out: list[float | None] = [None] * len(replies)
    by_context: dict[tuple[int, ...], list[int]] = {}
    for i, reply in enumerate(replies):
        if reply:
            by_context.setdefault(tuple(contexts[i]), []).append(i)
    adapter = model_adapter(lm.model)
    device = adapter.input_device()
    keyword = cache_keyword(lm.model.model)  # `past_key_values` on transformers 5.17, `cache` on 5.24
    for context, scored in by_context.items():
        prefix = lm.model.model(input_ids=torch.tensor([context], device=device), use_cache=True)
        # The context's last position predicts every reply's first token.
        first = adapter.logits(prefix.last_hidden_state[0, -1:], normed=True)
        for bucket in length_buckets([len(replies[i]) for i in scored], batch_size):
            members = [scored[b] for b in bucket]
            cache = copy.deepcopy(getattr(prefix, keyword))  # the forward below appends to it
            cache.batch_repeat_interleave(len(members))
            padded = padded_ids([replies[i] for i in members], pad_id, "right", device)
            mask = torch.cat([torch.ones(len(members), len(context), dtype=torch.long, device=device), padded.valid.long()], 1)
            hidden = lm.model.model(input_ids=padded.ids, attention_mask=mask, use_cache=True,
                                    **{keyword: cache}).last_hidden_state
            # Reply position t - 1 predicts reply token t.
            picks = [(row, t - 1) for row, i in enumerate(members) for t in range(1, len(replies[i]))]
            later = adapter.logits(hidden[tuple(torch.tensor(c, dtype=torch.long, device=hidden.device) for c in zip(*picks))]
                                   if picks else hidden[:0, 0], normed=True)
            logits = torch.cat([first.to(later.device).expand(len(members), -1), later])
            rows = [*range(len(members)), *(row for row, _ in picks)]
            targets = [*(replies[i][0] for i in members), *(replies[members[row]][t + 1] for row, t in picks)]
            means = mean_target_logp(logits, torch.tensor(targets, device=logits.device),
                                     torch.tensor(rows, device=logits.device), len(members))
            for i, value in zip(members, means.tolist()):
                out[i] = value
    return out


def text_broke(logp_per_token: float | None, repeated_share: float, base_logp_per_token: float | None,
               base_repeated_share: float, *, logp_drop: float, repeat_rise: float) -> bool:
    """A condition's replies read as broken text when their mean log-likelihood per token under the
    unmodified model is more than `logp_drop` below that of the unmodified model's own replies, or
    their repeated n-gram share more than `repeat_rise` above theirs. No log-likelihood on either
    side (every reply empty) leaves only the repetition test."""
    fell = logp_per_token is not None and base_logp_per_token is not None and logp_per_token < base_logp_per_token - logp_drop
    return fell or repeated_share > base_repeated_share + repeat_rise


@dataclass(frozen=True)
class CoherenceRule:
    """The n of the repeated n-gram share and the two margins of `text_broke` (steer.coherence_ngram,
    steer.broke_logp_drop, steer.broke_repeat_rise)."""

    ngram: int
    logp_drop: float
    repeat_rise: float


@dataclass(frozen=True)
class ReplyCoherence:
    """Both measures of each reply, in the replies' order."""

    logp_per_token: list[float | None]
    repeated_share: list[float]


def chat_reply_coherence(lm: LoadedModel, prompts: Sequence[str], replies: Sequence[str], *, prompt_format: ResolvedPromptFormat,
                         ngram: int, batch_size: int) -> ReplyCoherence:
    """Both measures of each reply, reply i answering prompts[i]: the context is the prompt as
    generation rendered it (one user turn, the assistant's turn opened; the tokenizer's BOS only
    in the plain format, as generation adds it). Each distinct (prompt, reply) is scored once."""
    pairs = list(dict.fromkeys(zip(prompts, replies)))
    rendered = {p: prompt_text(lm.tokenizer, (("user", p),), prompt_format) for p in dict.fromkeys(prompts)}
    context_ids = {p: lm.tokenizer.encode(text, add_special_tokens=prompt_format == "plain") for p, text in rendered.items()}
    logps = reply_logp_per_token(lm, [context_ids[p] for p, _ in pairs],
                                 [lm.tokenizer.encode(r, add_special_tokens=False) for _, r in pairs],
                                 batch_size=batch_size, pad_id=pad_token_id(lm.tokenizer))
    by_pair = dict(zip(pairs, logps))
    return ReplyCoherence([by_pair[pair] for pair in zip(prompts, replies)],
                          [repeated_ngram_share(reply_words(r), ngram) for r in replies])


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return sum(present) / len(present) if present else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def coherence_summary(logp_per_token: Sequence[float | None], repeated_share: Sequence[float],
                      base: Mapping[str, Any] | None = None, rule: CoherenceRule | None = None) -> dict[str, Any]:
    """steer.json's `coherence` of one set of replies: the mean of each measure over its replies
    (log-likelihood over the replies that have a token) and the per-reply values; given the
    unmodified replies' summary `base` and the `rule`, each mean's shift from it and `text_broke`."""
    logp, repeated = _mean(logp_per_token), _mean(repeated_share)
    repeated = 0.0 if repeated is None else repeated  # no replies at all: nothing repeated
    summary: dict[str, Any] = {"logp_per_token": _rounded(logp), "repeated_share": _rounded(repeated)}
    if base is not None and rule is not None:
        base_logp, base_repeated = base["logp_per_token"], base["repeated_share"]
        summary |= {"logp_per_token_shift": None if logp is None or base_logp is None else round(logp - base_logp, 4),
                    "repeated_share_shift": round(repeated - base_repeated, 4),
                    "text_broke": text_broke(logp, repeated, base_logp, base_repeated,
                                             logp_drop=rule.logp_drop, repeat_rise=rule.repeat_rise)}
    return summary | {"replies": {"logp_per_token": [_rounded(v) for v in logp_per_token],
                                  "repeated_share": [round(v, 4) for v in repeated_share]}}
