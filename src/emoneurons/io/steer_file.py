"""reports/steer/steer.json, the steer stage's output, read in one place: its typed reading, checked
on read (one line naming the file and the key), for the steering figure, report.md's steering
section and the atlas. The shape is in docs/CONTRACTS.md, the path and who writes and reads it in
io/artifacts.py. Files written before a key existed (the atlas reads older experiments) still read:
`coherence` and `judges` are optional, as they were added later."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoneurons.io.artifacts import STEER
from emoneurons.io.records import RecordError, emotions_field, field, json_object
from emoneurons.io.tables import read_json


@dataclass(frozen=True)
class SteerCondition:
    """One steered (or one control draw's) set of replies at one alpha: the shifts from the
    unmodified model's replies, each judge's (`judges`: {name: {"share", "share_shift", ...}}) and
    the replies' coherence (None in files from before it). `draw` is the control draw (None: steered)."""

    alpha: float
    share_shift: float
    logp_shift: float | None
    judges: Mapping[str, Mapping[str, Any]]
    coherence: Mapping[str, Any] | None
    draw: int | None

    def value(self, key: str) -> float | None:
        """A shift by name: `share_shift`, `logp_shift`, or `coherence.<key>` (None where absent)."""
        if key.startswith("coherence."):
            return (self.coherence or {}).get(key.removeprefix("coherence."))
        return {"share_shift": self.share_shift, "logp_shift": self.logp_shift}[key]

    def text_broke(self) -> bool:
        return bool((self.coherence or {}).get("text_broke"))


@dataclass(frozen=True)
class SteeredEmotion:
    """An emotion's entry of `emotions`: how many neurons it has, its steered conditions and its
    controls (every draw at every alpha)."""

    n_neurons: int
    steered: tuple[SteerCondition, ...]
    controls: tuple[SteerCondition, ...]

    def controls_at(self, alpha: float) -> list[SteerCondition]:
        """The control draws scaled by `alpha`."""
        return [c for c in self.controls if c.alpha == alpha]


@dataclass(frozen=True)
class SteerFile:
    """steer.json as read: the run's settings, the unmodified model's replies (`unmodified`, as
    written) and each emotion's conditions (emotions without an entry left out). `coherence` is the
    text-broke rule ({"ngram", "broke_logp_drop", "broke_repeat_rise"}), None in files from before it."""

    source: str
    model: str
    top_rate: float
    alphas: tuple[float, ...]
    max_new_tokens: int
    control_draws: int
    prompts: tuple[str, ...]
    classifier: Mapping[str, Any]
    judges: tuple[Mapping[str, Any], ...]
    coherence: Mapping[str, Any] | None
    unmodified: Mapping[str, Any]
    emotions: Mapping[str, SteeredEmotion]

    def judge_names(self) -> list[str]:
        return [judge["name"] for judge in self.judges]


def _condition(entry: Any, where: str) -> SteerCondition:
    entry = json_object(entry, where)
    return SteerCondition(
        alpha=field(entry, "alpha", (int, float), where, required=True),
        share_shift=field(entry, "share_shift", (int, float), where, required=True),
        logp_shift=field(entry, "logp_shift", (int, float), where),
        judges=field(entry, "judges", (dict,), where) or {},
        coherence=field(entry, "coherence", (dict,), where),
        draw=field(entry, "draw", (int,), where),
    )


def _conditions(entry: Mapping[str, Any], key: str, where: str) -> tuple[SteerCondition, ...]:
    return tuple(_condition(c, f"{where}.{key}[{i}]") for i, c in enumerate(field(entry, key, (list,), where) or []))


def _emotion(entry: Any, where: str) -> SteeredEmotion:
    entry = json_object(entry, where)
    return SteeredEmotion(n_neurons=field(entry, "n_neurons", (int,), where, required=True),
                          steered=_conditions(entry, "steered", where), controls=_conditions(entry, "controls", where))


def _strings(values: Sequence[Any], where: str) -> tuple[str, ...]:
    if not all(isinstance(v, str) for v in values):
        raise RecordError(f"{where}: not a list of strings")
    return tuple(values)


def parse_steer(record: Any, source: str = STEER.path) -> SteerFile:
    """steer.json's parsed JSON, checked: RecordError naming `source` and the key on the first
    missing or ill-typed one."""
    record = json_object(record, source)
    emotions = emotions_field(record, source)
    judges = field(record, "judges", (list,), source) or []
    for i, judge in enumerate(judges):
        field(json_object(judge, f"{source}: judges[{i}]"), "name", (str,), f"{source}: judges[{i}]", required=True)
    return SteerFile(
        source=source,
        model=field(record, "model", (str,), source, required=True),
        top_rate=float(field(record, "top_rate", (int, float), source, required=True)),
        alphas=tuple(field(record, "alphas", (list,), source, required=True)),
        max_new_tokens=field(record, "max_new_tokens", (int,), source, required=True),
        control_draws=field(record, "control_draws", (int,), source, required=True),
        prompts=_strings(field(record, "prompts", (list,), source, required=True), f"{source}: prompts"),
        classifier=field(record, "classifier", (dict,), source, required=True),
        judges=tuple(judges),
        coherence=field(record, "coherence", (dict,), source),
        unmodified=field(record, "unmodified", (dict,), source, required=True),
        emotions={emotion: _emotion(entry, f"{source}: emotions.{emotion}") for emotion, entry in emotions.items()},
    )


def read_steer(path: str | Path = STEER.path) -> SteerFile:
    """steer.json at `path`, read and checked (DataError naming the file when it is missing or not JSON)."""
    return parse_steer(read_json(path), str(path))
