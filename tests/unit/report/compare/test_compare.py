"""`emoneurons compare`: the overlaid figures drawn from synthetic runs, and the command on git
revisions of a temporary repo (reading a run at a revision: tests/unit/runtime/test_revisions.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emoneurons.cli import app
from emoneurons.io.eval_file import parse_eval
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.report.compare.figures import RunAtRev, compare_figures
from emoneurons.report.compare.write import CompareError, compare_markdown, write_comparison
from emoneurons.report.style import DPI, save_figure
from helpers.revisions_repo import two_run_repo
from helpers.synthetic_run import png_size, synthetic_run

COMPARED = ("figure1", "figure2", "figure3", "figure4", "figure14", "figure15")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return two_run_repo(tmp_path_factory.mktemp("repo"))


def test_compare_drawing_from_synthetic_runs(tmp_path):
    runs = [RunAtRev(name, parse_eval(r["eval"]), parse_neurons(r["neurons"])) for name, r in (
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
