"""Determinism below the pipeline test (tests/test_pipeline_dvc.py compares two whole runs):
what a rerun writes must not change when nothing it depends on changed."""

from __future__ import annotations

from pathlib import Path


def test_a_figure_saved_twice_is_byte_identical(tmp_path):
    """matplotlib salts SVG element ids with a random uuid unless told otherwise (the second
    dvc repro from scratch once differed in reports/figures only)."""
    from emoneurons.report.figures.drawing import new_figure
    from emoneurons.report.style import save_figure

    def draw(folder: Path) -> list[bytes]:
        figure = new_figure(3, 2)
        axes = figure.add_subplot()
        axes.bar([1, 2], [3, 4], hatch="//")
        axes.plot([1, 2], [2, 1], clip_on=True)
        return [path.read_bytes() for path in save_figure(figure, folder, "figure")]

    assert draw(tmp_path / "a") == draw(tmp_path / "b")
