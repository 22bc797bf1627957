"""The report's directions figure and section, from a synthetic directions.json (tests/helpers/
synthetic_inputs.py): every number in the table is the record's; the figure's texts stay on the
canvas and apart; the plot stage adds both when directions.json is there and on, leaves them out
when off, and stops in one line naming the key when it is malformed."""

from __future__ import annotations

import json
import re

import pytest

from emoneurons.emotions import EMOTIONS
from emoneurons.io.directions_file import parse_directions
from emoneurons.report.directions.figure import directions_figure
from emoneurons.report.directions.section import directions_blocks
from emoneurons.report.document.blocks import Image, Table
from emoneurons.report.document.markdown import render_markdown
from emoneurons.runtime.stage_run import stage_ending
from helpers.figure_layout import layout_faults
from helpers.stage_runner import stage_main
from helpers.synthetic_inputs import synthetic_directions
from helpers.synthetic_run import synthetic_run, write_run


@pytest.fixture(scope="module")
def record() -> dict:
    return synthetic_directions()


def test_table_holds_the_records_numbers(record):
    directions = parse_directions(record)
    blocks = directions_blocks(directions)
    table = next(b for b in blocks if isinstance(b, Table))
    assert [row[0] for row in table.rows] == list(EMOTIONS)
    for row in table.rows:
        emotion = row[0]
        point = record["geometry"]["coordinates"][emotion]
        assert float(row[1]) == pytest.approx(point["pc1"], abs=0.005) and float(row[2]) == pytest.approx(point["pc2"], abs=0.005)
        entry = record["alignment"]["emotions"][emotion]
        assert int(row[3]) == entry["neurons"]
        for offset, key in ((4, "abs_cos"), (8, "signed_cos")):
            assert float(row[offset]) == pytest.approx(entry["observed"][key], abs=5e-4)
            assert float(row[offset + 1]) == pytest.approx(entry["other_emotions"][key], abs=5e-4)
            mean, low, high = map(float, re.findall(r"-?\d+\.\d+", row[offset + 2]))
            assert (mean, low, high) == pytest.approx((entry["control_mean"][key], *entry["control_interval"][key]), abs=5e-4)
            assert float(row[offset + 3].removesuffix(" *")) == pytest.approx(entry["p"][key], rel=1e-2)
            assert row[offset + 3].endswith(" *") == entry["aligned"][key]
    markdown = render_markdown(blocks)
    valence = record["geometry"]["valence"]
    assert ("**is a valence axis**" in markdown) == valence["pc1_is_valence"]
    assert f"margin {valence['margin']:.2f}" in markdown and f"{valence['r']:+.2f}" in markdown
    assert f"strongest at layer **{record['strongest_layer']}** of {record['layers']}" in markdown
    assert any(isinstance(b, Image) and b.name == "directions" for b in blocks)


def test_figure_texts_stay_on_the_canvas_and_apart(record):
    assert layout_faults(directions_figure(parse_directions(record))) == []
    # an emotion without neurons has no alignment entry: its column is left out, the rest still drawn
    without = json.loads(json.dumps(record))
    del without["alignment"]["emotions"]["fear"]
    figure = directions_figure(parse_directions(without))
    assert layout_faults(figure) == []
    assert "fear" not in [t.get_text() for t in figure.axes[2].get_xticklabels()]


def _plot(root, capsys=None):
    return stage_main("plot")(params=root / "params.yaml", filter_json=root / "reports/filter.json",
                              meta=root / "data/counts/meta.json", neurons=root / "data/neurons/neurons.json",
                              eval_json=root / "reports/metrics/eval.json", neuron_metrics=root / "reports/metrics/neurons.json",
                              cards_json=root / "reports/cards/cards.json", steer_json=root / "reports/steer/steer.json",
                              directions_json=root / "reports/metrics/directions.json", figures=root / "reports/figures",
                              plots=root / "reports/plots", report=root / "reports/report.md", html=root / "reports/index.html")


def test_plot_adds_the_section_when_on_and_leaves_it_out_when_off(tmp_path, record):
    write_run(tmp_path, synthetic_run())
    summary = tmp_path / "reports/metrics/directions.json"
    summary.write_text(json.dumps(record))
    _plot(tmp_path)
    report = (tmp_path / "reports/report.md").read_text()
    assert "## Emotion directions in the residual stream" in report and "(figures/directions.png)" in report
    assert (tmp_path / "reports/figures/directions.png").stat().st_size > 1000
    summary.write_text(json.dumps({"enabled": False}))
    _plot(tmp_path)
    assert "Emotion directions" not in (tmp_path / "reports/report.md").read_text()
    assert not (tmp_path / "reports/figures/directions.png").exists()


def test_plot_stops_in_one_line_on_a_malformed_summary(tmp_path, record, capsys):
    write_run(tmp_path, synthetic_run())
    broken = json.loads(json.dumps(record))
    del broken["strongest_layer"]
    (tmp_path / "reports/metrics/directions.json").write_text(json.dumps(broken))
    with pytest.raises(SystemExit, match="^1$"), stage_ending("plot", name_errors=True):
        _plot(tmp_path)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"plot: {tmp_path / 'reports/metrics/directions.json'}: strongest_layer is missing (see docs/CONTRACTS.md, directions.json)"]
    assert not (tmp_path / "reports/report.md").exists()
