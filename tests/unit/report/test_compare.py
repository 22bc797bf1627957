"""`emoneurons compare`: reading runs at git revisions (a real temporary git repo) and drawing the
overlaid figures from synthetic runs."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emoneurons.cli import app
from emoneurons.io.eval_file import EVAL_FILE as EVAL_PATH, parse_eval
from emoneurons.report.compare import (
    NEURONS_PATH,
    CompareError,
    RunAtRev,
    compare_figures,
    compare_markdown,
    load_run,
    read_at_rev,
    resolve_rev,
    write_comparison,
)
from emoneurons.report.style import save_figure
from emoneurons.report.style import DPI
from helpers.synthetic_run import png_size, synthetic_run

COMPARED = ("figure1", "figure2", "figure3", "figure4", "figure14", "figure15")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git repo with two commits of a run's (git-tracked) metrics, the second with other
    numbers, and an experiment-style ref pointing at the first."""
    root = tmp_path_factory.mktemp("repo")
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "test@example.com")
    _git(root, "config", "user.name", "test")
    for seed, tag in ((0, "v1"), (5, "v2")):
        run = synthetic_run(seed=seed, layers=6 if seed else 8)
        for rel, data in ((EVAL_PATH, run["eval"]), (NEURONS_PATH, run["neurons"])):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(json.dumps(data))
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", tag)
        _git(root, "tag", tag)
    first = _git(root, "rev-parse", "v1")
    _git(root, "update-ref", f"refs/exps/{first[:2]}/{first[2:]}/tidy-exp", first)
    return root


def test_read_at_rev_returns_each_committed_version(repo):
    one = json.loads(read_at_rev(repo, "v1", EVAL_PATH))
    two = json.loads(read_at_rev(repo, "HEAD", EVAL_PATH))
    assert one == synthetic_run(seed=0)["eval"]
    assert two == synthetic_run(seed=5, layers=6)["eval"]
    assert json.loads(read_at_rev(repo, "HEAD~1", NEURONS_PATH))["layers"] == 8
    assert json.loads(read_at_rev(repo, "workspace", NEURONS_PATH))["layers"] == 6


def test_experiment_names_resolve_to_their_commit(repo):
    assert resolve_rev(repo, "tidy-exp") == _git(repo, "rev-parse", "v1")
    assert json.loads(read_at_rev(repo, "tidy-exp", NEURONS_PATH))["layers"] == 8


def test_unknown_revision_and_missing_file_fail_clearly(repo):
    with pytest.raises(CompareError, match="no-such-rev: not a git revision"):
        read_at_rev(repo, "no-such-rev", EVAL_PATH)
    with pytest.raises(CompareError, match="v1: cannot read reports/missing.json"):
        read_at_rev(repo, "v1", "reports/missing.json")


def test_compare_drawing_from_synthetic_runs(tmp_path):
    runs = [RunAtRev(name, parse_eval(r["eval"]), r["neurons"]) for name, r in (
        ("baseline", synthetic_run(seed=0)), ("top-2pct", synthetic_run(seed=1, top_rate=0.02)),
        ("deeper", synthetic_run(seed=2, layers=12)))]
    figures = compare_figures(runs)
    assert tuple(figures) == COMPARED
    # one line per run in every Figure 1 panel; 14/15 have one heatmap per run
    assert all(len(ax.get_lines()) == 3 for ax in figures["figure1"].axes)
    assert sum(1 for ax in figures["figure14"].axes if ax.images) == 3
    assert sum(1 for ax in figures["figure15"].axes if ax.images) == 3
    text = compare_markdown(runs)
    for name in ("baseline", "top-2pct", "deeper"):
        assert f"| {name} |" in text
    assert "| 2 |" in text  # top-2pct's top rate in percent
    assert "(figures/figure14.png)" in text
    for name in ("figure2", "figure15"):  # the widest; the command test below saves them all
        png, svg = save_figure(figures[name], tmp_path, name)
        assert png_size(png) == tuple(round(v * DPI) for v in figures[name].get_size_inches())
        assert ET.parse(svg).getroot().tag.endswith("svg")
    with pytest.raises(CompareError, match="at least two"):
        write_comparison(runs[:1], tmp_path / "one")


def test_compare_command_on_git_revisions(repo, tmp_path):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", "tidy-exp", "HEAD", "--repo", str(repo),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = (out / "compare.md").read_text()
    assert "| tidy-exp |" in table and "| HEAD |" in table
    for name in COMPARED:
        assert png_size(out / "figures" / f"{name}.png")[0] >= 1000
        assert ET.parse(out / "figures" / f"{name}.svg").getroot().tag.endswith("svg")
    bad = CliRunner().invoke(app, ["compare", "v1", "nope", "--repo", str(repo),
                                   "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 1 and "nope: not a git revision" in bad.output
    assert not (tmp_path / "bad").exists()
    one = CliRunner().invoke(app, ["compare", "v1", "--repo", str(repo)])
    assert one.exit_code == 1 and "at least two" in one.output


def test_a_broken_eval_json_at_a_revision_is_one_line_naming_both(tmp_path):
    (tmp_path / "reports" / "metrics").mkdir(parents=True)
    (tmp_path / EVAL_PATH).write_text(json.dumps({"model": "m", "conditions": []}))
    with pytest.raises(CompareError, match=r"^workspace: reports/metrics/eval.json: conditions is missing or empty$"):
        load_run(tmp_path, "workspace")
