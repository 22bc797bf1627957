"""Files and runs read at a git revision or DVC experiment name (runtime/revisions.py), on a real
temporary git repo: each committed version, experiment names, and one line for what cannot be read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emoneurons.io.artifacts import EVAL, NEURONS
from emoneurons.runtime.revisions import RevisionError, load_run, read_at_rev, resolve_rev
from helpers.revisions_repo import git, two_run_repo
from helpers.synthetic_run import synthetic_run


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return two_run_repo(tmp_path_factory.mktemp("repo"))


def test_read_at_rev_returns_each_committed_version(repo):
    one = json.loads(read_at_rev(repo, "v1", EVAL.path))
    two = json.loads(read_at_rev(repo, "HEAD", EVAL.path))
    assert one == synthetic_run(seed=0)["eval"]
    assert two == synthetic_run(seed=5, layers=6)["eval"]
    assert json.loads(read_at_rev(repo, "HEAD~1", NEURONS.path))["layers"] == 8
    assert json.loads(read_at_rev(repo, "workspace", NEURONS.path))["layers"] == 6


def test_experiment_names_resolve_to_their_commit(repo):
    assert resolve_rev(repo, "tidy-exp") == git(repo, "rev-parse", "v1")
    assert json.loads(read_at_rev(repo, "tidy-exp", NEURONS.path))["layers"] == 8


def test_unknown_revision_and_missing_file_fail_clearly(repo):
    with pytest.raises(RevisionError, match="no-such-rev: not a git revision"):
        read_at_rev(repo, "no-such-rev", EVAL.path)
    with pytest.raises(RevisionError, match="v1: cannot read reports/missing.json"):
        read_at_rev(repo, "v1", "reports/missing.json")


def test_a_broken_eval_json_at_a_revision_is_one_line_naming_both(tmp_path):
    (tmp_path / "reports" / "metrics").mkdir(parents=True)
    (tmp_path / EVAL.path).write_text(json.dumps({"model": "m", "conditions": []}))
    with pytest.raises(RevisionError, match=r"^workspace: reports/metrics/eval.json: conditions is missing or empty$"):
        load_run(tmp_path, "workspace")
