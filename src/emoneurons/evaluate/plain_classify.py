"""The masked classifier's plain path: the model's own forward on every full prompt, for a model
the layer-by-layer engine cannot serve (evaluate/classify.py says when). Exact, and slower: no
shared prefix, no layer reuse."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
from torch import Tensor

from emoneurons.emotions import EMOTIONS
from emoneurons.model.architecture import model_adapter
from emoneurons.model.batching import padded_ids
from emoneurons.model.loading import LoadedModel


def layered_engine_problem(lm: LoadedModel, longest: int) -> str | None:
    """Why the layer-by-layer engine cannot serve this model for prompts (with the answer) of up to
    `longest` tokens: a family it does not know. None: it can (sliding-window layers included:
    the engine masks each local layer's keys to its window, so the prompt's length does not matter)."""
    return model_adapter(lm.model).fast_engine_problem()


def plain_label_scores(lm: LoadedModel, contexts: Sequence[Sequence[int]], labels: Sequence[Sequence[int]],
                       pad_id: int) -> tuple[Tensor, int]:
    """[B, 6] label log-likelihoods after each of `contexts` (prefix + row) and the tokens fed.
    Per row: the context, whose last position scores every label's first token, and context + each
    multi-token label but its last token; all sequences right-padded into one forward call."""
    sequences: list[list[int]] = []
    picks: list[tuple[int, int, int, int, int]] = []  # (sequence, position, token, row in batch, label)
    for b, context in enumerate(contexts):
        sequences.append(list(context))
        for j, label in enumerate(labels):
            if len(label) == 1:
                picks.append((len(sequences) - 1, len(context) - 1, label[0], b, j))
        for j, label in enumerate(labels):
            if len(label) > 1:
                sequences.append([*context, *label[:-1]])
                picks += [(len(sequences) - 1, len(context) - 1 + t, tok, b, j) for t, tok in enumerate(label)]
    adapter = model_adapter(lm.model)
    padded = padded_ids(sequences, pad_id, "right", adapter.input_device())
    hidden = lm.model.model(input_ids=padded.ids, attention_mask=padded.valid.long(), use_cache=False).last_hidden_state
    # On the final norm's device, which a device map (`model.device: auto`) may put elsewhere than the embeddings.
    device = hidden.device
    seq_index, position, token, row, label = (torch.tensor(column, dtype=torch.long, device=device) for column in zip(*picks))
    logits = adapter.logits(hidden[seq_index, position], normed=True)
    picked = torch.log_softmax(logits.float(), dim=-1).gather(1, token.to(logits.device).unsqueeze(1)).squeeze(1)
    scores = torch.zeros(len(contexts), len(EMOTIONS), dtype=picked.dtype, device=picked.device)
    return scores.index_put_((row.to(picked.device), label.to(picked.device)), picked, accumulate=True), sum(map(len, sequences))


def plain_generate(lm: LoadedModel, context: Sequence[int], max_new_tokens: int, eos_ids: Collection[int],
                   pad_id: int) -> tuple[str, bool, int]:
    """Greedy decoding of one full prompt by the model's own generate (batch 1: no padding): the
    answer up to EOS, whether it was cut off (max_new_tokens reached with no EOS), the tokens fed."""
    ids = torch.tensor([list(context)], dtype=torch.long, device=model_adapter(lm.model).input_device())
    out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                            eos_token_id=sorted(eos_ids) or None, pad_token_id=pad_id)
    new = out[0, ids.shape[1]:].tolist()
    cut = next((i for i, t in enumerate(new) if t in eos_ids), None)
    return lm.tokenizer.decode(new[:cut], skip_special_tokens=True), cut is None, ids.shape[1] + max(len(new) - 1, 0)
