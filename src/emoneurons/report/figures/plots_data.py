"""The files of reports/plots/ that `dvc plots` draws: the numbers behind Figures 1, 3 and 4 as CSV
rows, and the confusion matrices as one JSON row per test dialogue."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.io.eval_file import EvalFile
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.params import same_ratio
from emoneurons.report.results.accuracy import as_percent
from emoneurons.report.results.confusions import confusion_of
from emoneurons.report.results.neuron_sets import per_layer_counts
from emoneurons.report.results.sweeps import (
    accuracy_changes,
    layer_sweep,
    layer_sweep_ratio,
    ratio_sweep,
    rows_matching,
)
from emoneurons.report.style import LAYER_RANGES


def _round(value: float, digits: int = 4) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def confusion_rows(matrix: torch.Tensor) -> list[dict[str, str]]:
    """One {"actual", "predicted"} row per test dialogue (what DVC's confusion template counts)."""
    rows = []
    for i, actual in enumerate(EMOTIONS):
        for j, predicted in enumerate(EMOTIONS):
            rows.extend({"actual": actual, "predicted": predicted} for _ in range(int(matrix[i, j])))
    return rows


def plots_data(neurons: NeuronsFile, eval_json: EvalFile) -> dict[str, Any]:
    """The files of reports/plots/ by relative path: lists of row dicts (written as CSV when the
    name ends in .csv, as JSON otherwise). Long files hold every number; the *_wide/_target files
    have one column per emotion because DVC colours a plot by column, not by a column's values."""
    top_rate = neurons.top_rate
    per_layer = per_layer_counts(neurons, top_rate)
    layers = neurons.layers
    changes = accuracy_changes(eval_json)
    sweep = ratio_sweep(changes)
    layer_rows = layer_sweep(changes, layer_sweep_ratio(changes, top_rate))
    files: dict[str, Any] = {
        "per_layer.csv": [
            {"layer": layer, "emotion": e, "neurons": per_layer[e][layer]}
            for layer in range(layers) for e in EMOTIONS
        ],
        "per_layer_wide.csv": [
            {"layer": layer, **{e: per_layer[e][layer] for e in EMOTIONS}} for layer in range(layers)
        ],
        "ratio_sweep.csv": [
            {"ratio": r["ratio"], "masked": r["masked"], "emotion": r["emotion"],
             "condition": r["condition"], "accuracy_change": _round(r["accuracy_change"], 3)}
            for r in sweep
        ],
        "ratio_sweep_target.csv": [
            {"ratio_percent": round(as_percent(ratio), 6), **{
                e: _round(next((r["accuracy_change"] for r in rows_matching(
                    sweep, masked=e, emotion=e, condition="mask") if same_ratio(r["ratio"], ratio)),
                    math.nan), 3)
                for e in EMOTIONS}}
            for ratio in sorted({r["ratio"] for r in sweep})
        ],
        "layer_sweep.csv": [
            {"layers": r["layers"], "masked": r["masked"], "emotion": r["emotion"],
             "condition": r["condition"], "ratio": r["ratio"],
             "accuracy_change": _round(r["accuracy_change"], 3)}
            for r in layer_rows
        ],
        "layer_sweep_target.csv": [
            {"label": f"{e} / {layers_}", "masked": e, "layers": layers_,
             "accuracy_change": _round(masked[0]["accuracy_change"], 3),
             "control_change": _round(control[0]["accuracy_change"], 3) if control else None}
            for e in EMOTIONS for layers_ in LAYER_RANGES
            if (masked := rows_matching(layer_rows, masked=e, emotion=e, layers=layers_, condition="mask"))
            for control in [rows_matching(layer_rows, masked=e, emotion=e, layers=layers_,
                                      condition="control")]
        ],
        "confusion/unmodified.json": confusion_rows(confusion_of(eval_json.unmodified())),
    }
    for emotion in EMOTIONS:
        found = eval_json.find("mask", emotion, top_rate, "all")
        if found:
            files[f"confusion/mask-{emotion}.json"] = confusion_rows(confusion_of(found[0]))
    return files


def write_plots_data(directory: str | Path, files: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Write plots_data() under `directory` (a folder the caller replaces atomically)."""
    import csv
    import json

    directory = Path(directory)
    for name, rows in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".csv"):
            columns = list(rows[0]) if rows else []
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        else:
            path.write_text(json.dumps(list(rows)) + "\n")
