"""data/neurons/neurons.json, select's output, in one place: the record select writes, its typed
reading (checked on read, one line naming the file and the key) and the lookup of one ratio's
selection with its one "no selection at this ratio" error. mask-eval, cards, steer, plot, compare
and the atlas all read it through here; the shape is in docs/CONTRACTS.md, the path and who
writes and reads it in io/artifacts.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoneurons.emotions import EMOTIONS
from emoneurons.io.artifacts import NEURONS
from emoneurons.io.records import RecordError, field, json_object
from emoneurons.io.tables import read_json
from emoneurons.params import ratio_key


class NoSelectionError(RecordError):
    """neurons.json has no selection at a ratio a stage needs, said in one line."""


@dataclass(frozen=True)
class NeuronSelection:
    """One ratio's entry of `ratios`: each emotion's neurons ([[layer, index], ...] sorted), how many
    distinct neurons that is, and (None where an older file lacks them) the counts per emotion and
    per layer and the largest entropy selected."""

    neurons: Mapping[str, Sequence[Sequence[int]]]
    selected: int
    per_emotion: Mapping[str, int] | None
    per_layer: Mapping[str, Sequence[int]] | None
    entropy_threshold: float | None

    def per_emotion_counts(self) -> dict[str, int]:
        """How many neurons each emotion has (emotions without any entry left out)."""
        return {emotion: len(pairs) for emotion, pairs in self.neurons.items()}


@dataclass(frozen=True)
class NeuronsFile:
    """neurons.json as read: select's params, the model's shape and each ratio's selection by its
    key (params.ratio_key). `source` names the file in errors."""

    source: str
    top_rate: float
    assign: str | None
    layers: int
    neurons_per_layer: int
    ratios: Mapping[str, NeuronSelection]

    def selection(self, ratio: float) -> NeuronSelection:
        """The selection at `ratio`; NoSelectionError naming the ratios there when select did not select at it."""
        key = ratio_key(ratio)
        if key not in self.ratios:
            have = ", ".join(sorted(self.ratios)) or "none"
            raise NoSelectionError(f"{self.source}: no selection at ratio {key} (has: {have}); "
                                   "rerun select (it selects at select.top_rate and each of eval.ratios)")
        return self.ratios[key]


def neurons_record(*, top_rate: float, assign: str, layers: int, neurons_per_layer: int,
                   selections: Mapping[float, Mapping[str, Any]]) -> dict[str, Any]:
    """What select writes: its params, the model's shape, and each ratio's selection record keyed
    by the ratio's key (params refuses two ratios with one key)."""
    return {
        "top_rate": top_rate,
        "assign": assign,
        "layers": layers,
        "neurons_per_layer": neurons_per_layer,
        "ratios": {ratio_key(ratio): selection for ratio, selection in selections.items()},
    }


def _selection(entry: Any, where: str) -> NeuronSelection:
    entry = json_object(entry, where)
    neurons = field(entry, "neurons", (dict,), where, required=True)
    for emotion, pairs in neurons.items():
        if emotion not in EMOTIONS:
            raise RecordError(f"{where}: neurons: {emotion!r}: allowed: {', '.join(EMOTIONS)}")
        if not isinstance(pairs, list) or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(i, int) and not isinstance(i, bool) for i in p)
                for p in pairs):
            raise RecordError(f"{where}: neurons.{emotion}: not a list of [layer, index] pairs")
    threshold = field(entry, "entropy_threshold", (int, float), where)
    return NeuronSelection(
        neurons=neurons, selected=field(entry, "selected", (int,), where, required=True),
        per_emotion=field(entry, "per_emotion", (dict,), where), per_layer=field(entry, "per_layer", (dict,), where),
        entropy_threshold=None if threshold is None else float(threshold),
    )


def parse_neurons(record: Any, source: str = NEURONS.path) -> NeuronsFile:
    """neurons.json's parsed JSON, checked: RecordError naming `source` and the key on the first
    missing or ill-typed one."""
    record = json_object(record, source)
    ratios = field(record, "ratios", (dict,), source, required=True)
    return NeuronsFile(
        source=source,
        top_rate=float(field(record, "top_rate", (int, float), source, required=True)),
        assign=field(record, "assign", (str,), source),
        layers=field(record, "layers", (int,), source, required=True),
        neurons_per_layer=field(record, "neurons_per_layer", (int,), source, required=True),
        ratios={key: _selection(entry, f"{source}: ratios.{key}") for key, entry in ratios.items()},
    )


def read_neurons(path: str | Path = NEURONS.path) -> NeuronsFile:
    """neurons.json at `path`, read and checked (DataError naming the file when it is missing or not JSON)."""
    return parse_neurons(read_json(path), str(path))
