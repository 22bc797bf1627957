"""`emoneurons atlas --models`' runs (runtime/atlas_runs.py): the plan and -S as DVC gets them, every
model's params validated before anything is queued (one line, no DVC call), and the sweep's DVC calls
(the queue worker finds `dvc` on PATH; `dvc queue start` returns while its workers run)."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from emoneurons.cli import app
from emoneurons.runtime import dvc_runs
from emoneurons.runtime.atlas_runs import (
    AtlasRunError,
    dvc_value,
    flatten,
    model_overrides,
    parse_set_params,
    split_hash_of,
)
from emoneurons.runtime.dvc_runs import SweepError, this_environment_first
from helpers.stage_runner import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
PLAN = yaml.safe_load((REPO / "presets" / "atlas" / "plan.yaml").read_text())


def test_plan_and_set_params_as_dvc_takes_them():
    assert flatten(PLAN) == {"eval.ratios": [0.01], "eval.layer_ranges": ["all"], "eval.controls": ["matched", "uniform"],
                             "eval.null_draws": 10, "eval.scales": [0.25, 0.5, 0.75], "steer.alphas": [8],
                             "directions.enabled": True}
    assert [dvc_value(v) for v in ([0.01, 0.02], ["all"], None, True, "emoprism")] == [
        "[0.01,0.02]", "[all]", "null", "true", "emoprism"]
    assert parse_set_params(["filter.source=emoprism", "eval.ratios=[0.01,0.02]"]) == {
        "filter.source": "emoprism", "eval.ratios": [0.01, 0.02]}
    with pytest.raises(AtlasRunError, match="a comma sweeps in DVC"):
        parse_set_params(["filter.source=emoprism,judges"])


def test_every_model_gets_the_same_plan_and_its_own_model_id(tmp_path):
    (tmp_path / "data" / "external").mkdir(parents=True)
    (tmp_path / "data" / "external" / "emoprism.json").write_text("[]")
    overrides = model_overrides(["embedded", "embedded-gemma3"], PLAN, {"filter.source": "emoprism"}, PARAMS, tmp_path)
    for model, keys in overrides.items():
        assert keys == {"eval.ratios": [0.01], "eval.layer_ranges": ["all"], "eval.controls": ["matched", "uniform"],
                        "eval.null_draws": 10, "eval.scales": [0.25, 0.5, 0.75], "steer.alphas": [8],
                        "directions.enabled": True, "filter.source": "emoprism", "model.id": model}


@pytest.mark.parametrize(("models", "set_params", "line"), [
    ("embedded,embedded-gema3", [], "atlas, model embedded-gema3: model.id: 'embedded-gema3' is not an embedded model, "
                                    "a hub id or a folder; allowed: embedded, embedded-gemma3"),
    ("embedded", [], "--models: the atlas sets at least two models side by side, got 1"),
    ("embedded,embedded", [], "--models: embedded named twice"),
    ("embedded,embedded-gemma3", ["eval.ratios=[2]"], "atlas, model embedded: eval.ratios"),
    ("embedded,embedded-gemma3", ["evall.shots=0"], "atlas, model embedded: evall"),
    ("embedded,embedded-gemma3", ["model.id=x"], "-S model.id: the atlas sets model.id from --models"),
    ("embedded,embedded-gemma3", ["filter.source=emoprism"], "filter.source emoprism: data/external/emoprism.json not found"),
], ids=["unknown model", "one model", "twice", "bad value", "unknown key", "model.id", "no EmoPrism file"])
def test_bad_models_or_values_are_one_line_before_any_dvc_call(tmp_path, monkeypatch, models, set_params, line):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    calls = []
    monkeypatch.setattr(dvc_runs, "dvc_command", lambda *a, **k: calls.append(a))
    args = ["atlas", "--models", models, *(a for p in set_params for a in ("-S", p)), "--repo", str(tmp_path),
            "--plan", str(REPO / "presets" / "atlas" / "plan.yaml")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), result.output
    assert calls == [] and not (tmp_path / "reports").exists()


def test_dvc_runs_with_this_environments_bin_first_on_path():
    # DVC's queue worker starts `dvc` (and the stages `python`) by name: outside an activated venv
    # every experiment failed with FileNotFoundError: 'dvc'.
    assert this_environment_first()["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_queue_start_returns_while_the_workers_it_forked_run(tmp_path, monkeypatch):
    # A stand-in for `python -m dvc queue start`: it forks a worker that keeps its stdout and
    # stderr for 20 s, and returns. On pipes the call waited for the worker (past the timeout).
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n(sleep 20) &\necho started\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(dvc_runs.sys, "executable", str(fake))
    begun = time.monotonic()
    done = dvc_runs.dvc_command(["queue", "start"], tmp_path, timeout=3, detached=True)
    assert done.stdout.strip() == "started" and done.returncode == 0 and time.monotonic() - begun < 3
    with pytest.raises(SweepError, match="did not answer within 1 s"):
        dvc_runs.dvc_command(["queue", "start"], tmp_path, timeout=1)


def test_split_hash_of_reads_dvc_lock():
    lock = "schema: '2.0'\nstages:\n  split:\n    outs:\n    - path: data/split\n      md5: 123.dir\n"
    assert split_hash_of(lock) == "123.dir" and split_hash_of(None) is None
    assert split_hash_of("stages: {}\n") is None
