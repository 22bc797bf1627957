"""reports/metrics/eval.json, mask-eval's output, in one place: the record mask-eval writes (its
keys in their order), its typed reading (checked on read, one line naming the file and the key),
and the lookup of a condition with its one "not in this run" error. The mask-eval stage, the plot
stage, the report and `emoneurons compare` and `atlas` all go through here; the shape is in
docs/CONTRACTS.md, the path and who writes and reads it in io/artifacts.py. Files written before a key existed (compare reads old revisions) still read:
only `conditions` and each condition's id, kind and accuracy are required."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoneurons.emotions import EMOTIONS
from emoneurons.io.artifacts import EVAL
from emoneurons.io.records import RecordError, field, json_object
from emoneurons.io.tables import read_json
from emoneurons.params import same_ratio

CONDITION_KINDS = ("unmodified", "mask", "control", "matched")
# Per control kind of eval.controls: the kind of its conditions and the masked condition's key
# holding its test (uniform keeps the names it had before matched controls existed).
CONTROL_CONDITION_KIND: dict[str, str] = {"uniform": "control", "matched": "matched"}
VS_KEY: dict[str, str] = {"uniform": "vs_control", "matched": "vs_matched"}


class NoConditionError(RecordError):
    """A condition a reader asks for is not in this run's eval.json."""


@dataclass(frozen=True)
class EvalCondition:
    """One entry of eval.json's `conditions`: which mask (kind, masked emotion, ratio, layer range)
    and what it scored. `effect` and `vs_control` are None in files from before the paired effects,
    `vs_matched` in files from before matched controls (and in runs without them); `scale` is 0 for
    a plain mask, the factor for a graded one (None: unmodified, or a file from before graded masking)."""

    id: str
    kind: str  # unmodified | mask | control
    masked: str | None
    ratio: float | None
    layers: str | None
    n_neurons: int | None
    accuracy: Mapping[str, float | None]
    ci95: Mapping[str, Sequence[float | None]]
    confusion: Sequence[Sequence[int]] | None
    effect: Mapping[str, Any] | None
    vs_control: Mapping[str, Any] | None
    vs_matched: Mapping[str, Any] | None = None
    scale: float | None = None
    draw: int | None = None

    def versus(self, kind: str) -> Mapping[str, Any] | None:
        """The test against controls of `kind` (uniform | matched); None when this run has none."""
        return {"uniform": self.vs_control, "matched": self.vs_matched}[kind]


@dataclass(frozen=True)
class EvalFile:
    """eval.json as read: the run's settings and numbers (None where an older file lacks them)
    and its conditions in the file's order. `source` names the file in errors."""

    source: str
    conditions: tuple[EvalCondition, ...]
    model: str | None = None
    method: str | None = None
    shots: int | None = None
    shot_selection: str | None = None
    shot_instruction: str | None = None
    label_format: str | None = None
    calibrate: str | None = None
    recalibrate: bool | None = None
    prompt_format: str | None = None
    engine: str | None = None
    n_test: int | None = None
    chance: float | None = None
    n_per_emotion: Mapping[str, int] | None = None
    baseline_above_chance: bool | None = None
    tokens: Mapping[str, int] | None = None
    effects: Mapping[str, Any] | None = None
    truncated: Mapping[str, Any] | None = None
    keyword_control: Mapping[str, Any] | None = None
    draw_null: Mapping[str, Any] | None = None
    dose_response: Mapping[str, Any] | None = None

    def condition(self, condition_id: str) -> EvalCondition:
        """The condition with this id; NoConditionError when this run did not evaluate it."""
        for found in self.conditions:
            if found.id == condition_id:
                return found
        raise NoConditionError(f"{self.source}: condition {condition_id!r} is not in this run "
                               f"({len(self.conditions)} conditions; rerun mask-eval with the params that plan it)")

    def find(self, kind: str, masked: str | None = None, ratio: float | None = None,
             layers: str | None = None, scale: float | None = 0.0) -> list[EvalCondition]:
        """Conditions of one kind, optionally of one masked emotion, ratio and layer range; plain
        masks only unless `scale` names a graded one's factor (None: any)."""
        return [c for c in self.conditions
                if c.kind == kind and (masked is None or c.masked == masked)
                and (ratio is None or same_ratio(c.ratio, ratio)) and (layers is None or c.layers == layers)
                and (scale is None or math.isclose(c.scale or 0.0, scale, abs_tol=1e-12))]

    @property
    def null(self) -> str:
        """The control kind of the headline verdict (`effects.null`; uniform in files from before
        matched controls)."""
        return (self.effects or {}).get("null", "uniform")

    @property
    def control_kinds(self) -> tuple[str, ...]:
        """The control kinds tested in this run, the headline's null first."""
        kinds = tuple((self.effects or {}).get("controls", {"uniform": None}))
        return (self.null, *(k for k in kinds if k != self.null))

    def unmodified(self) -> EvalCondition:
        """The unmodified model's condition (every eval.json has one: checked on read)."""
        return self.find("unmodified")[0]


# What each top-level key holds, in the order mask-eval writes them (`truncated`,
# `keyword_control`, `draw_null` and `dose_response` follow `conditions` when the run has them).
_HEADER: dict[str, tuple[type, ...]] = {
    "model": (str,), "method": (str,), "shots": (int,), "shot_selection": (str,), "shot_instruction": (str,),
    "label_format": (str,), "calibrate": (str,), "recalibrate": (bool,), "prompt_format": (str,), "engine": (str,),
    "n_test": (int,), "chance": (int, float), "n_per_emotion": (dict,), "baseline_above_chance": (bool,),
    "tokens": (dict,), "effects": (dict,),
}
_OPTIONAL: dict[str, tuple[type, ...]] = {"truncated": (dict,), "keyword_control": (dict,), "draw_null": (dict,),
                                          "dose_response": (dict,)}


def eval_record(
    *, model: str, method: str, shots: int, shot_selection: str, shot_instruction: str, label_format: str,
    calibrate: str, recalibrate: bool, prompt_format: str, engine: str, n_test: int, chance: float,
    n_per_emotion: Mapping[str, int], baseline_above_chance: bool, tokens: Mapping[str, int],
    effects: Mapping[str, Any], conditions: Sequence[Mapping[str, Any]],
    truncated: Mapping[str, Any] | None = None, keyword_control: Mapping[str, Any] | None = None,
    draw_null: Mapping[str, Any] | None = None, dose_response: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What mask-eval writes to eval.json, its keys in this order (the file's bytes depend on it)."""
    record: dict[str, Any] = {
        "model": model, "method": method, "shots": shots, "shot_selection": shot_selection,
        "shot_instruction": shot_instruction, "label_format": label_format, "calibrate": calibrate,
        "recalibrate": recalibrate, "prompt_format": prompt_format, "engine": engine, "n_test": n_test,
        "chance": chance, "n_per_emotion": dict(n_per_emotion), "baseline_above_chance": baseline_above_chance,
        "tokens": dict(tokens), "effects": effects, "conditions": list(conditions),
    }
    if truncated is not None:
        record["truncated"] = truncated
    if keyword_control is not None:
        record["keyword_control"] = keyword_control
    if draw_null is not None:
        record["draw_null"] = draw_null
    if dose_response is not None:
        record["dose_response"] = dose_response
    return record


def _condition(entry: Any, where: str) -> EvalCondition:
    if not isinstance(entry, Mapping):
        raise RecordError(f"{where}: {entry!r} is not an object")
    where = f"{where} ({entry['id']})" if isinstance(entry.get("id"), str) else where
    kind = field(entry, "kind", (str,), where, required=True)
    if kind not in CONDITION_KINDS:
        raise RecordError(f"{where}: kind: {kind!r}: allowed: {', '.join(CONDITION_KINDS)}")
    masked = field(entry, "masked", (str,), where, required=kind != "unmodified")
    if masked is not None and masked not in EMOTIONS:
        raise RecordError(f"{where}: masked: {masked!r}: allowed: {', '.join(EMOTIONS)}")
    ratio = field(entry, "ratio", (int, float), where, required=kind != "unmodified")
    return EvalCondition(
        id=field(entry, "id", (str,), where, required=True), kind=kind, masked=masked,
        ratio=None if ratio is None else float(ratio),
        layers=field(entry, "layers", (str,), where, required=kind != "unmodified"),
        n_neurons=field(entry, "n_neurons", (int,), where),
        accuracy=field(entry, "accuracy", (dict,), where, required=True),
        ci95=field(entry, "ci95", (dict,), where) or {},
        confusion=field(entry, "confusion", (list,), where),
        effect=field(entry, "effect", (dict,), where),
        vs_control=field(entry, "vs_control", (dict,), where),
        vs_matched=field(entry, "vs_matched", (dict,), where),
        scale=None if (scale := field(entry, "scale", (int, float), where)) is None else float(scale),
        draw=field(entry, "draw", (int,), where),
    )


def parse_eval(record: Any, source: str = EVAL.path) -> EvalFile:
    """eval.json's parsed JSON, checked: RecordError naming `source` and the key on the first
    missing or ill-typed one."""
    record = json_object(record, source)
    entries = record.get("conditions")
    if not isinstance(entries, list) or not entries:
        raise RecordError(f"{source}: conditions is missing or empty")
    conditions = tuple(_condition(entry, f"{source}: conditions[{i}]") for i, entry in enumerate(entries))
    if not any(c.kind == "unmodified" for c in conditions):
        raise RecordError(f"{source}: conditions: no condition of kind 'unmodified'")
    fields = {key: field(record, key, kinds, source) for key, kinds in (_HEADER | _OPTIONAL).items()}
    if fields["chance"] is not None:
        fields["chance"] = float(fields["chance"])
    return EvalFile(source=source, conditions=conditions, **fields)


def read_eval(path: str | Path = EVAL.path) -> EvalFile:
    """eval.json at `path`, read and checked (DataError naming the file when it is not JSON)."""
    return parse_eval(read_json(path), str(path))
