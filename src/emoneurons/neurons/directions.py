"""Running class sums of the residual stream and of the neurons' values over the train split.

The tokens are count's (neurons/counting.py:counting_inputs with the same `count` params): each
dialogue fed after the same prefix, only its own tokens summed (BOS and the prompt's prefix are
fed, not summed; `last`: its last token only; cue tokens left out under count.skip_cue_tokens).
The neurons are selected on exactly these tokens, so an emotion's direction here and its neurons'
P(active) describe the same text.

Per decoder layer l and emotion e, over the summed tokens t of e's dialogues:
- hidden[l, e] = sum of h_l(t), the residual stream after block l (before the final norm at the
  last block): the stream neuron (l, i)'s write has just been added to;
- squares[l, e] = sum of h_l(t)^2 per dimension (the within-class spread: direction_geometry);
- values[l, e, i] = sum of neuron (l, i)'s value, down_proj's input act_fn(gate) * up (its sign
  says which way the neuron writes along its down_proj column on e's tokens);
- tokens[e], dialogues[e]: how many were summed.
Memory is fixed by the model's shape (float64 sums), never by the number of dialogues: the stage
feeds the split chunk by chunk into the same sums.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor
from tqdm import tqdm

from emoneurons.emotions import EMOTIONS
from emoneurons.model.architecture import decoder_layers, gated_ffns
from emoneurons.model.batching import length_batches
from emoneurons.model.hooks import on_block_output, on_down_proj_input
from emoneurons.model.loading import LoadedModel
from emoneurons.model.special_tokens import pad_token_id
from emoneurons.neurons.counting import Batch, counting_inputs, padded_batch
from emoneurons.neurons.direction_geometry import emotion_directions, means_geometry, separation, standardized_means
from emoneurons.neurons.write_alignment import ALPHA, ControlDraw, emotion_alignment, write_cosines
from emoneurons.params import CountText, Positions
from emoneurons.text.prompt_format import ResolvedPromptFormat
from emoneurons.text.truncation import Truncation

# Rows (tokens) summed per matrix product: bounds the float64 copy of one layer's values
# (rows x neurons x 8 bytes; 2,048 x 14,336 at Llama-3.1-8B's FFN: 235 MB).
ROWS_PER_SUM = 2048


@dataclass
class ClassSums:
    """Per-emotion running sums over the summed tokens (module docstring); float64 on the CPU."""

    hidden: Tensor  # [layers, 6, hidden]
    squares: Tensor  # [layers, 6, hidden]
    values: Tensor  # [layers, 6, neurons]
    tokens: Tensor  # [6] int64
    dialogues: Tensor  # [6] int64

    @classmethod
    def zeros(cls, layers: int, hidden: int, neurons: int) -> ClassSums:
        e = len(EMOTIONS)
        return cls(hidden=torch.zeros(layers, e, hidden, dtype=torch.float64),
                   squares=torch.zeros(layers, e, hidden, dtype=torch.float64),
                   values=torch.zeros(layers, e, neurons, dtype=torch.float64),
                   tokens=torch.zeros(e, dtype=torch.int64), dialogues=torch.zeros(e, dtype=torch.int64))

    @classmethod
    def for_model(cls, lm: LoadedModel) -> ClassSums:
        ffns = gated_ffns(lm.model)  # UnsupportedModelError before any work
        return cls.zeros(len(ffns), ffns[0].down_proj.out_features, ffns[0].n_neurons)

    def tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def summed_rows(batch: Batch) -> tuple[Tensor, Tensor]:
    """The flat indices (into batch x width) of the batch's summed tokens and each one's emotion,
    from either of counting's batch forms (gathered rows, or a threshold 0 on counted tokens)."""
    if batch.rows is not None:
        return batch.rows, batch.emotion
    width = batch.input_ids.shape[1]
    rows = (batch.threshold.reshape(-1) == 0).nonzero().squeeze(1)
    return rows, batch.emotion[rows // width]


class _BatchRows:
    """The current batch's summed rows and their one-hot emotions [6, rows] float64, copied once
    to each device that asks (a layer's hook gets them on its own layer's device)."""

    def __init__(self) -> None:
        self.rows: Tensor | None = None
        self.onehot: Tensor | None = None
        self._copies: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def set(self, batch: Batch) -> None:
        rows, emotion = summed_rows(batch)
        self.rows = rows
        self.onehot = torch.nn.functional.one_hot(emotion, len(EMOTIONS)).T.to(torch.float64)
        self._copies = {}

    def on(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if device not in self._copies:
            assert self.rows is not None and self.onehot is not None
            self._copies[device] = (self.rows.to(device), self.onehot.to(device))
        return self._copies[device]


def _sum_rows(values: Tensor, current: _BatchRows, into: Tensor, squares: Tensor | None = None) -> None:
    """into [6, D] += the summed rows of values [B, S, D] per emotion (float64, a matrix product
    per ROWS_PER_SUM rows: deterministic, unlike a scatter-add on a GPU); squares [6, D] += their
    squares per dimension. Only summed rows are read: a padding row's NaN never enters."""
    rows, onehot = current.on(values.device)
    flat = values.reshape(-1, values.shape[-1])
    for start in range(0, rows.numel(), ROWS_PER_SUM):
        picked = flat.index_select(0, rows[start:start + ROWS_PER_SUM]).to(torch.float64)
        weights = onehot[:, start:start + ROWS_PER_SUM]
        into += weights @ picked
        if squares is not None:
            squares += weights @ (picked * picked)


def accumulate_class_sums(
    lm: LoadedModel,
    dialogues: Sequence[str],
    emotions: Sequence[str],
    sums: ClassSums,
    *,
    text: CountText,
    positions: Positions,
    batch_size: int,
    max_length: int,
    prompt_format: ResolvedPromptFormat | None,
    skip_cues: Collection[str] | None = None,
    max_padding: float = 0.1,
    progress: tqdm | None = None,
) -> Truncation:
    """Add these dialogues' tokens (count's tokens: module docstring) to `sums`; returns what
    model.max_length cut from them. `progress`, when given, advances by each batch's dialogues (one
    bar over the whole split, its ETA included, when the split is fed a piece at a time)."""
    items, truncated = counting_inputs(lm.tokenizer, dialogues, emotions, text=text, positions=positions,
                                       max_length=max_length, prompt_format=prompt_format, skip_cues=skip_cues)
    blocks, ffns = decoder_layers(lm.model), gated_ffns(lm.model)
    devices = [ffn.down_proj.weight.device for ffn in ffns]
    # This call's sums on each layer's device, added to `sums` (CPU) once at the end.
    hidden = [torch.zeros(sums.hidden.shape[1:], dtype=torch.float64, device=d) for d in devices]
    squares = [torch.zeros(sums.squares.shape[1:], dtype=torch.float64, device=d) for d in devices]
    values = [torch.zeros(sums.values.shape[1:], dtype=torch.float64, device=d) for d in devices]
    current = _BatchRows()
    block_hooks = {layer: (lambda h, layer=layer: _sum_rows(h, current, hidden[layer], squares[layer]))
                   for layer in range(len(blocks))}
    value_hooks = {layer: (lambda x, layer=layer: _sum_rows(x, current, values[layer])) for layer in range(len(ffns))}
    tokens = torch.zeros(len(EMOTIONS), dtype=torch.int64)
    pad_id, decoder = pad_token_id(lm.tokenizer), lm.model.model
    input_device = decoder.get_input_embeddings().weight.device
    batches = length_batches([len(item.ids) for item in items], batch_size, max_padding)
    with torch.inference_mode(), on_block_output(blocks, block_hooks), on_down_proj_input(ffns, value_hooks):
        for indices in batches:
            batch = padded_batch([items[i] for i in indices], pad_id, lm.tokenizer.padding_side)
            current.set(batch)
            decoder(input_ids=batch.input_ids.to(input_device), attention_mask=batch.attention_mask.to(input_device),
                    position_ids=batch.position_ids.to(input_device), use_cache=False)
            tokens += torch.tensor(batch.counted, dtype=torch.int64)
            if progress is not None:
                progress.update(len(indices))
    for layer in range(len(ffns)):
        sums.hidden[layer] += hidden[layer].cpu()
        sums.squares[layer] += squares[layer].cpu()
        sums.values[layer] += values[layer].cpu()
    sums.tokens += tokens
    for item in items:
        sums.dialogues[item.emotion] += 1
    return truncated


def directions_summary(sums: ClassSums, write: Sequence[Tensor], p_active: Tensor,
                       selected: dict[str, dict[int, Tensor]], *, ratio: float, draws: int, seed: int,
                       control_draw: ControlDraw, control: str, activity_bins: int | None = None) -> dict:
    """directions.json's computed parts (io/directions_file.directions_record's keywords but model,
    write_direction and truncated): separation and the valence reading by layer, the PCA at the
    layer of strongest separation, and each emotion's write alignment against `draws` controls
    (`selected`: each emotion's neurons at `ratio`; `control` names the control draw, `activity_bins`
    its P(active) bins when it is matched)."""
    separated = separation(sums.hidden, sums.squares, sums.tokens)
    strongest = int(separated.argmax())
    means = standardized_means(sums.hidden, sums.squares, sums.tokens)
    by_layer = [means_geometry(means[layer], layer) for layer in range(means.shape[0])]
    directions = emotion_directions(sums.hidden, sums.tokens)
    alignment = emotion_alignment(write_cosines(write, directions), sums.values, p_active, selected,
                                  draws=draws, seed=seed, control_draw=control_draw)
    return {
        "layers": int(means.shape[0]),
        "hidden": int(means.shape[2]),
        "summed": {"tokens": dict(zip(EMOTIONS, sums.tokens.tolist())), "dialogues": dict(zip(EMOTIONS, sums.dialogues.tolist()))},
        "by_layer": {
            "separation": separated.tolist(),
            "direction_norm": {e: directions[:, i].norm(dim=-1).tolist() for i, e in enumerate(EMOTIONS)},
            "pc1_explained": [g.explained[0] for g in by_layer],
            "valence_r": [g.valence_r for g in by_layer],
            "pc1_is_valence": [g.valence_axis for g in by_layer],
        },
        "strongest_layer": strongest,
        "geometry": by_layer[strongest].record(),
        "alignment": {"ratio": ratio, "control": control, "activity_bins": activity_bins, "draws": draws, "seed": seed, "alpha": ALPHA, "correction": "bonferroni",
                      "emotions": {e: a.record() for e, a in alignment.items()}},
    }
