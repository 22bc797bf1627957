"""`emoneurons atlas`'s runs: one DVC experiment per model, the same data and plan for each
(params.yaml, then the atlas's plan presets/atlas/plan.yaml, then the command's -S, then model.id),
queued and run to the end with the sweep's machinery. Every model's params are validated before
anything is queued, so a bad name or value is one line and no work. Each experiment's records are
then read back at its revision (runtime/revisions.py) for report/atlas/."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from emoneurons.errors import EmoneuronsError
from emoneurons.io.artifacts import CARDS, DIRECTIONS, EVAL, NEURONS, STEER, Artifact
from emoneurons.io.cards_file import parse_cards
from emoneurons.io.directions_file import DirectionsFile, parse_directions
from emoneurons.io.eval_file import parse_eval
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.io.records import RecordError, json_text
from emoneurons.io.steer_file import parse_steer
from emoneurons.params import ParamsError, parse_params
from emoneurons.report.atlas.tables import ModelRun
from emoneurons.runtime.dvc_runs import SweepError, queue_experiments, sweep
from emoneurons.runtime.revisions import RevisionError, read_at_rev, resolve_rev

DEFAULT_PLAN = Path("presets/atlas/plan.yaml")
# What the atlas reads of each experiment, in ModelRun's order, each by its typed reader; and
# directions.json, read by directions_of where there is one (experiments from before it have none).
ATLAS_RECORDS: dict[Artifact, Callable[[Any, str], Any]] = {
    EVAL: parse_eval, NEURONS: parse_neurons, STEER: parse_steer, CARDS: parse_cards}


class AtlasRunError(EmoneuronsError, ValueError):
    """A model, plan or -S value the atlas refuses, a DVC step that failed, or an experiment whose
    records cannot be read (one line)."""


def flatten(plan: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"eval": {"ratios": [0.01]}} -> {"eval.ratios": [0.01]}."""
    out: dict[str, Any] = {}
    for key, value in plan.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def parse_set_params(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` as `dvc exp run -S` takes them, the value read as YAML. A top-level comma
    would make DVC sweep it; the atlas (and bench/scale_run.py) run one experiment each."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise AtlasRunError(f"-S {pair}: expected key=value")
        value = yaml.safe_load(text)
        if isinstance(value, str) and "," in value:
            raise AtlasRunError(f"-S {pair}: a comma sweeps in DVC; one value per key here (a list: [a,b])")
        out[key] = value
    return out


def dvc_value(value: Any) -> str:
    """A value as `-S key=value` writes it (lists in brackets, no spaces)."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dvc_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def set_param(raw: dict, dotted: str, value: Any) -> None:
    """raw[a][b] = value for `a.b` (sections made as needed; parse_params judges the key)."""
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise AtlasRunError(f"-S {dotted}: {part} is not a section of params.yaml")
    node[last] = value


def model_overrides(models: Sequence[str], plan: Mapping[str, Any], set_params: Mapping[str, Any],
                    params_yaml: Mapping[str, Any], repo: Path = Path(".")) -> dict[str, dict[str, Any]]:
    """Per model, the -S overrides of its experiment (plan, then set_params, then model.id), each
    model's whole params validated as its stages will validate them; with `filter.source: emoprism`
    the EmoPrism file must be in the workspace (each experiment's filter stage reads it)."""
    if len(models) < 2:
        raise AtlasRunError(f"--models: the atlas sets at least two models side by side, got {len(models)}")
    if len(set(models)) != len(models):
        raise AtlasRunError(f"--models: {', '.join(sorted({m for m in models if models.count(m) > 1}))} named twice")
    if "model.id" in set_params:
        raise AtlasRunError("-S model.id: the atlas sets model.id from --models")
    out = {}
    for model in models:
        overrides = {**flatten(plan), **set_params, "model.id": model}
        raw = copy.deepcopy(dict(params_yaml))
        for key, value in overrides.items():
            set_param(raw, key, value)
        try:
            params = parse_params(raw, source=f"atlas, model {model}")
        except ParamsError as error:
            raise AtlasRunError(str(error)) from None
        emoprism = Path(params.filter.emoprism.path)
        if params.filter.source == "emoprism" and not (repo / emoprism).is_file():
            raise AtlasRunError(f"filter.source emoprism: {emoprism} not found (the release's emoprism.json.gz as it "
                                "is, or its JSON; data/external/README.md)")
        out[model] = overrides
    return out


def read_plan(path: Path) -> dict[str, Any]:
    try:
        plan = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise AtlasRunError(f"--plan {path}: file not found") from None
    except yaml.YAMLError as error:
        raise AtlasRunError(f"--plan {path}: not YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(plan, dict):
        raise AtlasRunError(f"--plan {path}: expected a mapping of params sections")
    return plan


def run_atlas_experiments(
    models: Sequence[str], set_params: Sequence[str], repo: Path, *, plan_path: Path = DEFAULT_PLAN, jobs: int = 2,
    timeout: float = 0, echo: Callable[[str, bool], None] | None = None,
) -> dict[str, str]:
    """Queue one experiment per model and run the queue to the end; {model: experiment name}.
    Raises AtlasRunError naming the models whose experiment did not succeed."""
    plan = read_plan(plan_path if plan_path.is_absolute() else repo / plan_path)
    try:
        params_yaml = yaml.safe_load((repo / "params.yaml").read_text())
    except FileNotFoundError:
        raise AtlasRunError(f"{repo / 'params.yaml'}: file not found (run from the project's folder or give --repo)") from None
    overrides = model_overrides(models, plan, parse_set_params(set_params), params_yaml, repo)
    names = {}
    for model, keys in overrides.items():
        try:
            found = queue_experiments([f"{k}={dvc_value(v)}" for k, v in keys.items()], repo)
        except SweepError as error:
            raise AtlasRunError(f"model {model}: {error}") from None
        if len(found) != 1:
            raise AtlasRunError(f"model {model}: dvc exp run --queue queued {len(found)} experiments, not one")
        names[model] = found[0]
    try:
        final = sweep([], jobs, repo, timeout=timeout, echo=echo)
    except SweepError as error:
        raise AtlasRunError(str(error)) from None
    failed = [f"{model} ({name} {final.get(name, 'not run')})" for model, name in names.items() if final.get(name) != "Success"]
    if failed:
        raise AtlasRunError(f"atlas: the experiment of {', '.join(failed)} did not succeed; no atlas written")
    return names


def load_model_run(repo: str | Path, experiment: str) -> ModelRun:
    """One experiment's records (each by its typed reader, named `experiment <name>: <path>` in
    errors), its model.id (params.yaml) and its test split's hash (dvc.lock)."""
    try:
        resolve_rev(repo, experiment)
    except RevisionError:
        raise AtlasRunError(f"experiment {experiment}: not found in {repo} (a failed experiment has no results; "
                            f"`dvc queue logs {experiment}` says why, `dvc exp show` lists those that ran)") from None
    records = []
    for artifact, parse in ATLAS_RECORDS.items():
        source = f"experiment {experiment}: {artifact.path}"
        try:
            text = read_at_rev(repo, experiment, artifact.path)
        except RevisionError:
            raise AtlasRunError(f"experiment {experiment}: has no {artifact.path} (did its pipeline run to the end?)") from None
        try:
            records.append(parse(json_text(text, source), source))
        except RecordError as error:
            raise AtlasRunError(str(error)) from None
    try:
        params = yaml.safe_load(read_at_rev(repo, experiment, "params.yaml"))
        model = str(params["model"]["id"])
    except (RevisionError, yaml.YAMLError, KeyError, TypeError):
        raise AtlasRunError(f"experiment {experiment}: params.yaml has no model.id") from None
    return ModelRun(experiment, model, *records, split_hash_of(_text_or_none(repo, experiment, "dvc.lock")),
                    directions_of(repo, experiment))


def directions_of(repo: str | Path, experiment: str) -> DirectionsFile | None:
    """The experiment's directions.json, checked (None for an experiment from before the directions
    stage); a malformed one is one line naming the experiment, the file and the key."""
    text = _text_or_none(repo, experiment, DIRECTIONS.path)
    if text is None:
        return None
    source = f"experiment {experiment}: {DIRECTIONS.path}"
    try:
        return parse_directions(json_text(text, source), source)
    except RecordError as error:
        raise AtlasRunError(str(error)) from None


def _text_or_none(repo: str | Path, experiment: str, path: str) -> str | None:
    try:
        return read_at_rev(repo, experiment, path)
    except RevisionError:
        return None


def split_hash_of(dvc_lock: str | None) -> str | None:
    """The hash dvc.lock records for the split stage's data/split output (None when absent)."""
    if not dvc_lock:
        return None
    outs = ((yaml.safe_load(dvc_lock) or {}).get("stages") or {}).get("split", {}).get("outs") or []
    return next((o.get("md5") for o in outs if o.get("path") == "data/split"), None)
