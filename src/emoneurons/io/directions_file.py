"""The directions stage's outputs in one place: reports/metrics/directions.json (the summary the
report and the atlas read: separation by layer, the six class means' PCA and its valence verdict,
each emotion's neurons' write alignment against control draws) and data/directions/ (the class
sums it came from). The record the stage writes, its typed reading (checked on read, one line
naming the file and the key) and the sums' reading; the shape is in docs/CONTRACTS.md, the paths
and who writes and reads them in io/artifacts.py."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoneurons.emotions import EMOTIONS
from emoneurons.io.artifacts import DIRECTION_SUMS, DIRECTIONS
from emoneurons.io.records import RecordError, json_object
from emoneurons.io.tables import read_json

SUM_TENSORS = ("hidden", "squares", "values", "tokens", "dialogues")
SUMMARIES = ("abs_cos", "signed_cos")


class DirectionsFileError(RecordError):
    """directions.json or the class sums lack a key or hold a value of the wrong kind (one line)."""


@dataclass(frozen=True)
class EmotionAlignment:
    """One emotion's neurons against its control draws (neurons/write_alignment.py)."""

    neurons: int
    draws: int
    observed: Mapping[str, float]  # abs_cos, signed_cos
    other_emotions: Mapping[str, float]  # the same neurons against the other emotions' directions
    control_mean: Mapping[str, float]
    control_sd: Mapping[str, float]
    control_interval: Mapping[str, Sequence[float]]  # the draws' 2.5% and 97.5% quantiles
    p: Mapping[str, float]
    aligned: Mapping[str, bool]


@dataclass(frozen=True)
class DirectionsFile:
    """directions.json as read; everything but `enabled` and `source` is None when the stage was off."""

    source: str
    enabled: bool
    model: str | None = None
    layers: int | None = None
    hidden: int | None = None
    write_direction: str | None = None
    summed: Mapping[str, Any] | None = None
    by_layer: Mapping[str, Sequence[Any]] | None = None
    strongest_layer: int | None = None
    geometry: Mapping[str, Any] | None = None
    alignment: Mapping[str, Any] | None = None
    emotions: Mapping[str, EmotionAlignment] | None = None

    @property
    def pc1_is_valence(self) -> bool | None:
        return None if self.geometry is None else bool(self.geometry["valence"]["pc1_is_valence"])


def directions_record(*, model: str, layers: int, hidden: int, write_direction: str, summed: Mapping[str, Any],
                      by_layer: Mapping[str, Sequence[Any]], strongest_layer: int, geometry: Mapping[str, Any],
                      alignment: Mapping[str, Any], truncated: Mapping[str, Any]) -> dict[str, Any]:
    """What the stage writes when on, its keys in this order (the file's bytes depend on it)."""
    return {"enabled": True, "model": model, "layers": layers, "hidden": hidden, "write_direction": write_direction,
            "summed": dict(summed), "by_layer": dict(by_layer), "strongest_layer": strongest_layer,
            "geometry": dict(geometry), "alignment": dict(alignment), "truncated": dict(truncated)}


def disabled_record() -> dict[str, Any]:
    """What the stage writes when directions.enabled is false (no model was run)."""
    return {"enabled": False}


def _fail(where: str, what: str) -> DirectionsFileError:
    return DirectionsFileError(f"{where}: {what} (see docs/CONTRACTS.md, directions.json)")


def _get(record: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(record, Mapping) or key not in record:
        raise _fail(where, f"{key} is missing")
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, bool) if bool in kinds else isinstance(value, kinds) and not isinstance(value, bool)
    if not ok:
        raise _fail(where, f"{key}: {value!r} is not {' or '.join(k.__name__ for k in kinds)}")
    return value


def _number(record: Any, key: str, where: str) -> float:
    value = float(_get(record, key, (int, float), where))
    if not math.isfinite(value):
        raise _fail(where, f"{key}: {value!r} is not a finite number")
    return value


def _per_summary(record: Any, key: str, where: str) -> dict[str, float]:
    block = _get(record, key, dict, where)
    return {s: _number(block, s, f"{where}: {key}") for s in SUMMARIES}


def _emotion(entry: Any, where: str) -> EmotionAlignment:
    draws = _get(entry, "draws", int, where)
    spread = _get(entry, "control_sd", dict, where)  # NaN with fewer than two draws
    interval = _get(entry, "control_interval", dict, where)
    return EmotionAlignment(
        neurons=_get(entry, "neurons", int, where), draws=draws,
        observed=_per_summary(entry, "observed", where),
        other_emotions=_per_summary(entry, "other_emotions", where),
        control_mean=_per_summary(entry, "control_mean", where) if draws else {},
        control_sd={s: float(_get(spread, s, (int, float), f"{where}: control_sd")) for s in SUMMARIES},
        control_interval={s: [float(v) for v in _get(interval, s, list, f"{where}: control_interval")] for s in SUMMARIES},
        p=_per_summary(entry, "p", where),
        aligned={s: _get(_get(entry, "aligned", dict, where), s, bool, f"{where}: aligned") for s in SUMMARIES},
    )


def parse_directions(record: Any, source: str = DIRECTIONS.path) -> DirectionsFile:
    """directions.json's parsed JSON, checked: DirectionsFileError naming `source` and the key."""
    record = json_object(record, source)
    enabled = _get(record, "enabled", bool, source)
    if not enabled:
        return DirectionsFile(source=source, enabled=False)
    layers = _get(record, "layers", int, source)
    by_layer = _get(record, "by_layer", dict, source)
    for key in ("separation", "pc1_explained", "valence_r", "pc1_is_valence"):
        if len(_get(by_layer, key, list, f"{source}: by_layer")) != layers:
            raise _fail(f"{source}: by_layer", f"{key} has not one entry per layer ({layers})")
    strongest = _get(record, "strongest_layer", int, source)
    if not 0 <= strongest < layers:
        raise _fail(source, f"strongest_layer: {strongest} is outside 0..{layers - 1}")
    geometry = _get(record, "geometry", dict, source)
    coordinates = _get(geometry, "coordinates", dict, f"{source}: geometry")
    for emotion in EMOTIONS:
        for axis in ("pc1", "pc2"):
            _number(_get(coordinates, emotion, dict, f"{source}: geometry: coordinates"), axis,
                    f"{source}: geometry: coordinates: {emotion}")
    for axis in ("pc1", "pc2"):
        _number(_get(geometry, "explained_variance", dict, f"{source}: geometry"), axis, f"{source}: geometry: explained_variance")
    _get(_get(geometry, "valence", dict, f"{source}: geometry"), "pc1_is_valence", bool, f"{source}: geometry: valence")
    alignment = _get(record, "alignment", dict, source)
    entries = _get(alignment, "emotions", dict, f"{source}: alignment")
    unknown = sorted(set(entries) - set(EMOTIONS))
    if unknown:
        raise _fail(f"{source}: alignment: emotions", f"{unknown[0]!r} is not an emotion; allowed: {', '.join(EMOTIONS)}")
    emotions = {e: _emotion(entries[e], f"{source}: alignment: emotions: {e}") for e in EMOTIONS if e in entries}
    return DirectionsFile(
        source=source, enabled=True, model=_get(record, "model", str, source), layers=layers,
        hidden=_get(record, "hidden", int, source), write_direction=_get(record, "write_direction", str, source),
        summed=_get(record, "summed", dict, source), by_layer=by_layer, strongest_layer=strongest,
        geometry=geometry, alignment=alignment, emotions=emotions,
    )


def read_directions(path: str | Path = DIRECTIONS.path) -> DirectionsFile:
    """directions.json at `path`, read and checked (DataError naming the file when it is not JSON)."""
    return parse_directions(read_json(path), str(path))


def read_class_sums(folder: str | Path = DIRECTION_SUMS.folder) -> dict[str, Any]:
    """The class sums' tensors (SUM_TENSORS) in `folder`; DirectionsFileError naming the file when
    it is missing, unreadable or lacks one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = DIRECTION_SUMS.at(folder)
    if not path.is_file():
        raise DirectionsFileError(f"{path}: file not found (run the directions stage with directions.enabled: true)")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError) as error:
        raise DirectionsFileError(f"{path}: not a readable safetensors file ({error})") from None
    missing = [name for name in SUM_TENSORS if name not in tensors]
    if missing:
        raise DirectionsFileError(f"{path}: lacks tensor(s) {', '.join(missing)}; has {', '.join(sorted(tensors))}")
    return tensors
