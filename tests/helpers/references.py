"""Plain reference computations several test files check the fast paths against."""

from __future__ import annotations

import torch


def reference_logp_per_token(lm, context: list[int], reply: list[int]) -> float:
    """The plain reference: the model's own forward (its LM head included) on context + reply, no
    padding, no cache; the mean log-softmax at each reply token from the position before it."""
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([context + reply])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(float(logp[len(context) - 1 + t, token]) for t, token in enumerate(reply)) / len(reply)
