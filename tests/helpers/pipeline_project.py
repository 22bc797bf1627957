"""The real pipeline in a real git + DVC project, for the pipeline test modules: minimal params
on a tiny random Llama saved to a local folder (so `model.id: <path>` is exercised), reproduced
once per test session and copied for each module, so the modules can run on different xdist
workers without each paying for the first `dvc repro`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from filelock import FileLock

from helpers.stage_runner import REPO, run_command

ALL_STAGES = ["augment", "generate", "filter", "split", "count", "select", "directions", "mask-eval", "cards", "steer", "plot"]
SUMMARY_METRICS = {"accuracy", "drop", "control_drop", "neurons"}  # reports/metrics/summary.json


def minimal_params(model_dir: Path) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    # max_length 4096 (the tiny model's context): its small tokenizer makes the shot prompt ~1,150 tokens.
    params["model"].update(id=str(model_dir), batch_size=8, max_length=4096)
    params["augment"].update(n_seed=4, rounds=1)
    params["generate"].update(per_pair=2)
    params["filter"].update(min_agree=1, judges=[{"name": "lexicon", "backend": "lexicon"}])
    params["split"]["test_fraction"] = 0.25
    params["eval"].update(shots=1, ratios=[0.01, 0.05], layer_ranges=["top", "all"], control_draws=1, bootstrap=50, null_draws=2,
                          scales=[0.5])
    params["cards"].update(top_neurons=2, contexts=2)
    params["steer"].update(alphas=[0, 4], prompts=2, max_new_tokens=4)
    return params


def dvc(project: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return run_command([sys.executable, "-m", "dvc", *args], project, env)


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def pipeline_env(tmp_path_factory) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="t@example.com", DVC_NO_ANALYTICS="1", GX_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", EMONEURONS_CACHE=str(tmp_path_factory.mktemp("cache")),
    )
    return env


def _session_dir(tmp_path_factory) -> Path:
    # Under xdist each worker's base temp sits in the session's own folder, which the workers share.
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _build(root: Path, env: dict, tokenizer) -> None:
    from helpers.tiny_models import build_tiny_llama

    work, model_dir = root / "work", root / "tiny-llama"
    model = build_tiny_llama(len(tokenizer))
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    tracked = run_command(["git", "ls-files", "-co", "--exclude-standard"], REPO, env).stdout.split()
    for name in tracked:
        source = REPO / name
        if source.is_file() and not name.startswith(("tests/", "bench/", "docs/")):
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / name)
    (work / "dvc.lock").unlink(missing_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(minimal_params(model_dir), sort_keys=False))
    run_command(["git", "init", "-q", "-b", "main"], work, env)
    run_command(["git", "add", "-A"], work, env)
    run_command(["git", "commit", "-qm", "init"], work, env)
    first = dvc(work, env, "repro")
    assert stages_run(first.stdout) == ALL_STAGES, first.stdout
    run_command(["git", "add", "-A"], work, env)
    run_command(["git", "commit", "-qm", "first run"], work, env)


def reproduced_project(tmp_path_factory, env: dict, tokenizer) -> Path:
    """A fresh git + DVC project holding the repo's tracked files, reproduced once and committed,
    with a local remote of its own: a copy of the session's one build (made by whichever module
    asks first, the others waiting on a file lock)."""
    shared = _session_dir(tmp_path_factory)
    built = shared / "pipeline-project"
    with FileLock(str(shared / "pipeline-project.lock")):
        if (built / "failed").exists():  # one build a session: the others fail at once, with its error
            raise AssertionError(f"the session's pipeline project did not build:\n{(built / 'failed').read_text()}")
        if not (built / "built").exists():
            try:
                _build(built, env, tokenizer)
            except BaseException as error:  # a pytest-timeout too
                built.mkdir(parents=True, exist_ok=True)
                (built / "failed").write_text(f"{type(error).__name__}: {error}")
                raise
            (built / "built").touch()
    root = tmp_path_factory.mktemp("project")
    work = root / "work"
    shutil.copytree(built / "work", work, symlinks=True)
    dvc(work, env, "remote", "add", "-d", "--local", "test", str(root / "remote"))
    return work


def clone_and_pull(project: Path, env: dict, dest: Path, remote_args: list[list[str]]) -> Path:
    """A git clone of the project with the DVC remote set up by `remote_args` (dvc remote ...
    commands) and its data pulled."""
    run_command(["git", "clone", "-q", str(project), str(dest)], dest.parent, env)
    for args in remote_args:
        dvc(dest, env, "remote", *args)
    dvc(dest, env, "pull")
    return dest
