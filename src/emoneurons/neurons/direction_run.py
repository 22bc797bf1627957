"""The directions stage's body: the train split (read and checked as count reads it:
neurons/count_inputs.py) streamed a piece at a time through the model into the class sums
(neurons/directions.py), then summarised (directions_summary) into directions.json's record.
Memory: one piece of dialogues and the fixed-size sums."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from emoneurons.emotions import EMOTIONS
from emoneurons.io.artifacts import COUNTS
from emoneurons.io.directions_file import directions_record
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.io.tables import DataError, read_counts
from emoneurons.model.architecture import gated_ffns, write_direction_source, write_directions
from emoneurons.model.loading import load_model
from emoneurons.neurons.count_inputs import PIECE_ROWS, Dialogues
from emoneurons.neurons.directions import ClassSums, accumulate_class_sums, directions_summary
from emoneurons.neurons.masking import neurons_by_layer
from emoneurons.neurons.selection import overall_activation_probability
from emoneurons.neurons.write_alignment import control_draw_of
from emoneurons.params import ControlKind, CountText, DirectionsParams, ModelParams, Positions, PromptFormat
from emoneurons.text.nrc_lexicon import cue_words
from emoneurons.text.prompt_format import resolve_prompt_format
from emoneurons.text.truncation import Truncation


def train_pieces(dialogues: Dialogues, rows: int = PIECE_ROWS) -> Iterator[tuple[list[str], list[str]]]:
    """(texts, emotions) of the dialogues, at most `rows` at a time, in order."""
    emotions = dialogues.emotions()
    for start in range(0, len(dialogues), rows):
        for first, texts in dialogues.texts(start, min(start + rows, len(dialogues))):
            yield texts, [EMOTIONS[int(e)] for e in emotions[first:first + len(texts)]]


@dataclass(frozen=True)
class DirectionsResult:
    sums: ClassSums
    record: dict[str, Any]
    model: str
    device: torch.device

    def json(self) -> str:
        return json.dumps(self.record, indent=2, allow_nan=False) + "\n"

    def describe(self) -> str:
        """The stage's closing line."""
        geometry, alignment = self.record["geometry"], self.record["alignment"]
        aligned = [e for e, a in alignment["emotions"].items() if a["aligned"]["signed_cos"]]
        return (f"directions: {sum(self.record['summed']['tokens'].values())} tokens; strongest separation at layer "
                f"{self.record['strongest_layer']}; PC1 {geometry['explained_variance']['pc1']:.0%} of the means' variance, "
                f"valence: {'yes' if geometry['valence']['pc1_is_valence'] else 'no'} (r {geometry['valence']['r']:+.2f}); "
                f"neurons writing along their emotion vs {alignment['draws']} {alignment['control']} draws: "
                f"{', '.join(aligned) or 'none'}")


def _check_shapes(f: torch.Tensor, layers: int, neurons: int, source: Path, other: str) -> None:
    if tuple(f.shape[:2]) != (layers, neurons):
        raise DataError(f"{source}: counts are [{f.shape[0]} layers, {f.shape[1]} neurons], {other} "
                        f"[{layers}, {neurons}]; rerun count and select for this model")


@dataclass(frozen=True)
class SummedTokens:
    """Which tokens are summed: count's (count.text, count.positions, count.skip_cue_tokens, and
    eval.prompt_format for text: prompt)."""

    text: CountText
    positions: Positions
    skip_cue_tokens: bool
    prompt_format: PromptFormat


def run_directions(model: ModelParams, tokens: SummedTokens, options: DirectionsParams, *, train: Dialogues,
                   counts: Path, neurons: NeuronsFile, top_rate: float, control: ControlKind, activity_bins: int,
                   chunk: int = PIECE_ROWS) -> DirectionsResult:
    """The class sums over the train split (count's tokens; `train` read and checked already:
    count_inputs.ParquetDialogues), `chunk` dialogues at a time, then their summary with the
    neurons selected at `top_rate` (select's neurons.json, read; P(active) from count's folder `counts`)
    against directions.control_draws draws of `control` (eval.controls' first kind, mask-eval's null;
    matched: in `activity_bins` bins). The inputs are checked against each other before the
    model loads, and against the model after."""
    f, T = read_counts(counts)
    selection = neurons.selection(top_rate)
    counts_file = COUNTS.at(counts)
    _check_shapes(f, neurons.layers, neurons.neurons_per_layer, counts_file, f"{neurons.source} was selected on")
    skip_cues = cue_words() if tokens.skip_cue_tokens else None
    lm = load_model(model, padding_masks_only=True)
    # eval.prompt_format, resolved for this model once (only the prompt has a format)
    prompt_format = resolve_prompt_format(lm.tokenizer, tokens.prompt_format) if tokens.text == "prompt" else None
    ffns = gated_ffns(lm.model)
    _check_shapes(f, len(ffns), ffns[0].n_neurons, counts_file, "the model has")
    sums = ClassSums.for_model(lm)
    cut: Truncation | None = None
    with tqdm(total=len(train), desc="directions", unit=" dialogues", file=sys.stderr) as progress:
        for dialogues, emotions in train_pieces(train, chunk):
            part = accumulate_class_sums(
                lm, dialogues, emotions, sums, text=tokens.text, positions=tokens.positions, batch_size=model.batch_size,
                max_length=model.max_length, prompt_format=prompt_format, skip_cues=skip_cues, progress=progress,
            )
            if cut is None:
                cut = part
            else:
                cut.merge(part)
    assert cut is not None  # ParquetDialogues: every emotion has dialogues
    selected = {e: neurons_by_layer(pairs) for e, pairs in selection.neurons.items()}
    computed = directions_summary(sums, write_directions(lm.model), overall_activation_probability(f, T), selected,
                                  ratio=top_rate, draws=options.control_draws, seed=options.seed,
                                  control_draw=control_draw_of(control, activity_bins), control=control,
                                  activity_bins=activity_bins if control == "matched" else None)
    record = directions_record(model=lm.name, write_direction=write_direction_source(lm.model), truncated=cut.record(),
                               **computed)
    return DirectionsResult(sums=sums, record=record, model=lm.name, device=lm.device)
