"""The method on one page: count, select, mask, classify, one sequence at a time.

This is what the pipeline computes, written as plainly as transformers allows: a plain forward
pass of the model per sequence, forward hooks to read the FFNs, no batching, padding, caching or
layer reuse. The fast paths are accelerators tested equal to it (tests/unit/neurons/test_reference.py):
`neurons/counting.py:activation_counts` (batched counting) and
`evaluate/classify.py:MaskedClassifier` (prefix sharing and layer reuse).

1. Count (LAPE): neuron u = (layer l, index i) is the i-th input of layer l's down_proj. It is
   active on a token when gate_proj(x)_i > 0 (`gate`) or act_fn(gate_proj(x))_i * up_proj(x)_i > 0
   (`product`). f[l, i, e] counts the tokens of emotion e's dialogues on which u is active,
   T[e] counts those tokens. Each dialogue is fed after a `prefix` (the tokenizer's BOS, or the
   classification prompt's prefix), and only the dialogue's own tokens are counted (`last`: its
   last token only).
2. Select: LAPE's entropy rule on P = f / T (neurons/selection.py, already one page).
3. Mask: zero the selected down_proj inputs on every token (graded masking: multiply them by a
   factor instead).
4. Classify: each emotion label's summed log-probability after the prompt; the argmax wins.

The FFN modules come from the model adapter (model/architecture.py), so Phi-3's fused
gate_up_proj is read like any gated FFN. Only torch, the adapter, the emotions and the selection
rule are imported here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from emoneurons.emotions import EMOTION_INDEX, EMOTIONS
from emoneurons.model.architecture import gated_ffns
from emoneurons.neurons.selection import Selection, select_emotion_neurons

__all__ = ["count_activations", "label_scores", "masked", "neurons_of", "predict", "select"]


@torch.no_grad()
def count_activations(
    model: nn.Module,
    dialogue_ids: Sequence[Sequence[int]],
    emotions: Sequence[str],
    *,
    prefix: Sequence[int],
    positions: str = "all",
    activation: str = "gate",
    max_length: int = 1024,
) -> tuple[Tensor, Tensor]:
    """f int64 [layers, neurons, 6] and T int64 [6]: each dialogue's own tokens (`dialogue_ids`,
    no special tokens) fed after `prefix`, the whole sequence cut to `max_length` tokens."""
    if activation not in ("gate", "product") or positions not in ("all", "last"):
        raise ValueError(f"activation {activation!r} / positions {positions!r}: allowed: gate|product, all|last")
    ffns = gated_ffns(model)
    f = torch.zeros(len(ffns), ffns[0].n_neurons, len(EMOTIONS), dtype=torch.int64)
    T = torch.zeros(len(EMOTIONS), dtype=torch.int64)
    ffn_inputs: dict[int, Tensor] = {}  # layer -> the FFN's input [tokens, hidden] of this sequence

    def keep_input(layer: int):
        def hook(module: nn.Module, args: tuple) -> None:
            ffn_inputs[layer] = args[0][0]
        return hook

    handles = [ffn.mlp.register_forward_pre_hook(keep_input(layer)) for layer, ffn in enumerate(ffns)]
    try:
        for own, emotion in zip(dialogue_ids, emotions, strict=True):
            ids = [*prefix, *own][:max_length]
            counted = list(range(len(prefix), len(ids)))
            if not counted:  # the dialogue was cut off entirely
                continue
            if positions == "last":
                counted = counted[-1:]
            model(torch.tensor([ids], device=ffns[0].down_proj.weight.device))
            e = EMOTION_INDEX[emotion]
            for layer, ffn in enumerate(ffns):
                x = ffn_inputs[layer][counted]
                values = ffn.gate(x) if activation == "gate" else ffn.product(x)
                f[layer, :, e] += (values > 0).sum(0).cpu()
            T[e] += len(counted)
    finally:
        for handle in handles:
            handle.remove()
    return f, T


def select(f: Tensor, T: Tensor, *, top_rate: float, filter_rate: float, activation_bar_ratio: float,
           assign: str = "lape") -> Selection:
    """LAPE's identify step (neurons/selection.py)."""
    return select_emotion_neurons(f, T, top_rate=top_rate, filter_rate=filter_rate,
                                  activation_bar_ratio=activation_bar_ratio, assign=assign)


def neurons_of(selection: Selection, emotion: str) -> dict[int, list[int]]:
    """{layer: [index, ...]} of one emotion's selected neurons."""
    by_layer: dict[int, list[int]] = {}
    for layer, index in selection.neurons[emotion]:
        by_layer.setdefault(layer, []).append(index)
    return by_layer


@contextmanager
def masked(model: nn.Module, neurons: Mapping[int, Sequence[int]], scale: float = 0.0) -> Iterator[None]:
    """Inside the context, the given down_proj inputs {layer: [index, ...]} are zero on every token
    (`scale` > 0: multiplied by it)."""
    ffns = gated_ffns(model)
    handles = []

    def zero(index: list[int]):
        def hook(module: nn.Module, args: tuple) -> tuple:
            x = args[0].clone()
            x[..., index] = 0.0 if scale == 0 else x[..., index] * scale
            return (x, *args[1:])
        return hook

    try:
        for layer, index in neurons.items():
            if len(index):
                handles.append(ffns[int(layer)].down_proj.register_forward_pre_hook(zero([int(i) for i in index])))
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def label_scores(model: nn.Module, context: Sequence[int], labels: Sequence[Sequence[int]]) -> Tensor:
    """[len(labels)] float32: each label's summed token log-probability right after `context`
    (the whole prompt: prefix, dialogue, suffix), one forward pass per label."""
    device = gated_ffns(model)[0].down_proj.weight.device
    scores = []
    for label in labels:
        logits = model(torch.tensor([[*context, *label]], device=device)).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        # The logits at position p predict token p + 1: label token t sits at len(context) + t.
        scores.append(sum(logprobs[len(context) - 1 + t, token] for t, token in enumerate(label)))
    return torch.stack(scores).cpu()


def predict(model: nn.Module, contexts: Sequence[Sequence[int]], labels: Sequence[Sequence[int]],
            neurons: Mapping[int, Sequence[int]] | None = None, scale: float = 0.0) -> tuple[Tensor, list[str]]:
    """Scores [n, 6] of the six emotion labels (EMOTIONS order) after each prompt, and the
    argmax emotion of each, with `neurons` masked (None: the unmodified model; `scale` > 0: their
    activations multiplied by it instead)."""
    if len(labels) != len(EMOTIONS):
        raise ValueError(f"{len(labels)} labels; one per emotion: {', '.join(EMOTIONS)}")
    with masked(model, neurons or {}, scale):
        scores = torch.stack([label_scores(model, context, labels) for context in contexts])
    return scores, [EMOTIONS[int(i)] for i in scores.argmax(dim=1)]
