"""The directions stage's body: the train split checked, then streamed chunk by chunk through the
model into the class sums (neurons/directions.py), then summarised (directions_summary) into
directions.json's record. Memory: one chunk of dialogues and the fixed-size sums."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.io.directions_file import directions_record
from emoneurons.io.tables import DataError
from emoneurons.model.architecture import gated_ffns, write_direction_source, write_directions
from emoneurons.model.loading import load_model
from emoneurons.neurons.directions import ClassSums, accumulate_class_sums, directions_summary
from emoneurons.neurons.masking import neurons_by_layer
from emoneurons.neurons.selection import overall_activation_probability
from emoneurons.neurons.write_alignment import uniform_same_layer
from emoneurons.params import CountText, DirectionsParams, ModelParams, Positions, PromptFormat
from emoneurons.text.nrc_lexicon import cue_words
from emoneurons.text.truncation import Truncation

CHUNK_DIALOGUES = 4096  # dialogues tokenized and fed per chunk: bounds memory at any split size
COLUMNS = ("dialogue", "theme")


def _batches(path: Path, rows: int, columns: tuple[str, ...]) -> Iterator[dict[str, list]]:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        table = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several kinds for a bad file; all mean "unreadable"
        raise DataError(f"{path}: not a readable parquet table ({str(error).strip().splitlines()[0]})") from None
    missing = [c for c in columns if c not in table.schema_arrow.names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    for batch in table.iter_batches(batch_size=rows, columns=list(columns)):
        yield batch.to_pydict()


def train_emotions(path: Path) -> dict[str, int]:
    """Dialogues per emotion in the train split, its `theme` column read a chunk at a time;
    DataError (one line) on a missing column, an unknown emotion or an emotion without dialogues."""
    found = dict.fromkeys(EMOTIONS, 0)
    for batch in _batches(path, CHUNK_DIALOGUES, COLUMNS):
        for theme in batch["theme"]:
            if theme not in found:
                raise DataError(f"{path}: column 'theme': unknown emotion {theme!r}; allowed: {', '.join(EMOTIONS)}")
            found[theme] += 1
    absent = [e for e, n in found.items() if not n]
    if absent:
        raise DataError(f"{path}: no dialogues for emotion(s) {', '.join(absent)}: every emotion needs a direction")
    return found


def train_chunks(path: Path, rows: int = CHUNK_DIALOGUES) -> Iterator[tuple[list[str], list[str]]]:
    """(dialogues, emotions) of the train split, `rows` at a time (checked by train_emotions first)."""
    for batch in _batches(path, rows, COLUMNS):
        yield batch["dialogue"], batch["theme"]


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


def _check_shapes(f: torch.Tensor, layers: int, neurons: int, source: str) -> None:
    if tuple(f.shape[:2]) != (layers, neurons):
        raise DataError(f"{source}: counts are [{f.shape[0]} layers, {f.shape[1]} neurons], the model has "
                        f"[{layers}, {neurons}]; rerun count and select for this model")


@dataclass(frozen=True)
class SummedTokens:
    """Which tokens are summed: count's (count.text, count.positions, count.skip_cue_tokens, and
    eval.prompt_format for text: prompt)."""

    text: CountText
    positions: Positions
    skip_cue_tokens: bool
    prompt_format: PromptFormat


def run_directions(model: ModelParams, tokens: SummedTokens, options: DirectionsParams, *, train: Path,
                   counts: tuple[torch.Tensor, torch.Tensor], top_rate: float, selection: Mapping[str, Any],
                   chunk: int = CHUNK_DIALOGUES) -> DirectionsResult:
    """The class sums over the train split (count's tokens), then their summary with the
    selection's neurons (at select.top_rate) against directions.control_draws draws."""
    f, T = counts
    train_emotions(train)  # the split's problems, in one line, before the model loads
    skip_cues = cue_words() if tokens.skip_cue_tokens else None
    lm = load_model(model, padding_masks_only=True)
    ffns = gated_ffns(lm.model)
    _check_shapes(f, len(ffns), ffns[0].n_neurons, "data/counts/counts.safetensors")
    sums = ClassSums.for_model(lm)
    cut: Truncation | None = None
    for dialogues, emotions in train_chunks(train, chunk):
        part = accumulate_class_sums(
            lm, dialogues, emotions, sums, text=tokens.text, positions=tokens.positions,
            batch_size=model.batch_size, max_length=model.max_length, prompt_format=tokens.prompt_format, skip_cues=skip_cues,
        )
        if cut is None:
            cut = part
        else:
            cut.merge(part)
    assert cut is not None  # train_emotions: every emotion has dialogues
    selected = {e: neurons_by_layer(pairs) for e, pairs in selection["neurons"].items()}
    computed = directions_summary(sums, write_directions(lm.model), overall_activation_probability(f, T), selected,
                                  ratio=top_rate, draws=options.control_draws, seed=options.seed,
                                  control_draw=uniform_same_layer, control="uniform_same_layer")
    record = directions_record(model=lm.name, write_direction=write_direction_source(lm.model), truncated=cut.record(),
                               **computed)
    return DirectionsResult(sums=sums, record=record, model=lm.name, device=lm.device)
