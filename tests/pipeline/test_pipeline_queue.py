"""The pipeline's determinism and a queued sweep as docs/USING.md runs it, each on its own copy of
the session's reproduced project (pipeline_project.py): a module of their own, so that they run
beside test_pipeline_dvc.py's experiments on another xdist worker."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from helpers.pipeline_project import (
    ALL_STAGES,
    SUMMARY_METRICS,
    clone_and_pull,
    dvc,
    pipeline_env,
    reproduced_project,
    stages_run,
)
from helpers.stage_runner import run_command

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    return pipeline_env(tmp_path_factory)


@pytest.fixture
def project(tmp_path_factory, env, tiny_tokenizer) -> Path:
    """A copy of the session's reproduced project per test: the determinism rerun and the sweep's
    push must not see each other."""
    return reproduced_project(tmp_path_factory, env, tiny_tokenizer)


def lock_hashes(lock: dict) -> dict[str, str]:
    """Every output's hash in a dvc.lock: {"stage:path": md5}."""
    return {f"{stage}:{out['path']}": out["md5"] for stage, entry in lock["stages"].items() for out in entry.get("outs", [])}


def test_a_second_run_from_scratch_is_byte_identical(project, env):
    """Determinism: `dvc repro --force` (every stage rerun, its outputs removed first) with the same
    params gives the same hash for every data output, metric and report in dvc.lock."""
    before = yaml.safe_load((project / "dvc.lock").read_text())
    again = dvc(project, env, "repro", "--force")
    assert stages_run(again.stdout) == ALL_STAGES
    after = yaml.safe_load((project / "dvc.lock").read_text())
    changed = {k: v for k, v in lock_hashes(after).items() if lock_hashes(before).get(k) != v}
    assert changed == {}, f"outputs that differ between two runs with the same params: {sorted(changed)}"
    assert len(lock_hashes(after)) >= 15


def test_queued_sweep_from_a_fresh_clone_runs_and_compares_by_name(project, env, tmp_path):
    import csv
    import io

    dvc(project, env, "push", "--all-commits")  # the committed run, for the clone to pull
    remote = run_command([sys.executable, "-m", "dvc", "remote", "list", "--local"], project, env).stdout.split()[1]
    clone = clone_and_pull(project, env, tmp_path / "clone", [["add", "-d", "--local", "test", remote]])
    # docs/USING.md's recipe. 0.01 is the committed run's value: its experiment is restored from the
    # pulled cache, not rerun.
    swept = run_command([sys.executable, "-m", "emoneurons.cli", "sweep", "-S", "select.top_rate=0.01,0.02", "-j", "2",
                 "--timeout", "900"], clone, env, check=False)
    run_command([sys.executable, "-m", "dvc", "queue", "stop", "--kill"], clone, env, check=False)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    names = re.search(r"sweep: 2 experiments: (.+)", swept.stdout)[1].split(", ")
    assert "sweep: all 2 experiments succeeded" in swept.stdout, swept.stdout
    assert stages_run(dvc(clone, env, "queue", "logs", names[0]).stdout) == []
    assert stages_run(dvc(clone, env, "queue", "logs", names[1]).stdout) == ["select", "directions", "mask-eval", "cards", "steer", "plot"]

    rows = {r["Experiment"]: r for r in csv.DictReader(io.StringIO(dvc(clone, env, "exp", "show", "--csv").stdout))}
    assert [rows[n]["select.top_rate"] for n in names] == ["0.01", "0.02"]
    assert all(rows[n][m] != "" for n in names for m in SUMMARY_METRICS)
    out = tmp_path / "compare"
    run_command([sys.executable, "-m", "emoneurons.cli", "compare", *names, "--out", str(out)], clone, env)
    assert all(n in (out / "compare.md").read_text() for n in names)
