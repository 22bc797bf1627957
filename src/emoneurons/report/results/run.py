"""One run as the plot stage reads it (docs/CONTRACTS.md), and the facts about it every section
names: its model, params digest and data source."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emoneurons.io.eval_file import EvalFile
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.params import Params


@dataclass(frozen=True)
class RunMetrics:
    """Everything the plot stage reads (docs/CONTRACTS.md), parsed from JSON (neurons.json and
    eval.json by their typed readers, io/artifacts.py), plus the params."""

    filter: Mapping[str, Any]
    meta: Mapping[str, Any]
    neurons: NeuronsFile
    eval: EvalFile
    neuron_metrics: Mapping[str, Any]
    params: Params


def params_digest(params: Params) -> str:
    """Short sha256 of the validated params (defaults filled in), stable across key order."""
    return hashlib.sha256(params.model_dump_json().encode()).hexdigest()[:12]


def model_name(run: RunMetrics) -> str:
    return str(run.eval.model or run.meta.get("model") or run.params.model.id)


def data_source(params: Params) -> str:
    backend = params.generate.backend
    if backend == "template":
        return "template (offline phrase-bank composition, not LLM-written)"
    if backend == "openai":
        return f"openai-compatible endpoint, model `{params.generate.openai.model}`"
    return f"hf, local model `{params.model.id}`"
