"""A git repository of synthetic runs for the commands that read runs at revisions (compare)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from emoneurons.io.artifacts import EVAL, NEURONS
from helpers.synthetic_run import synthetic_run


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def two_run_repo(root: Path) -> Path:
    """A git repo with two commits of a run's (git-tracked) metrics (tags v1, v2), the second with
    other numbers and 6 layers instead of 8, and an experiment-style ref `tidy-exp` at the first."""
    git(root, "init", "-q")
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "user.name", "test")
    for seed, tag in ((0, "v1"), (5, "v2")):
        run = synthetic_run(seed=seed, layers=6 if seed else 8)
        for rel, data in ((EVAL.path, run["eval"]), (NEURONS.path, run["neurons"])):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(json.dumps(data))
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", tag)
        git(root, "tag", tag)
    first = git(root, "rev-parse", "v1")
    git(root, "update-ref", f"refs/exps/{first[:2]}/{first[2:]}/tidy-exp", first)
    return root
