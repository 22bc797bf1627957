"""The atlas's emotion-directions panel: directions_row from a directions.json (synthetic_directions),
the figure's layout for two models of different depths, the section in atlas.md (a model without
directions named), and runtime/atlas_runs.py reading directions.json at an experiment's revision
(absent: none; malformed: one line naming the experiment, the file and the key)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from emoneurons.emotions import EMOTIONS
from emoneurons.io.artifacts import CARDS as CARDS_FILE
from emoneurons.io.artifacts import DIRECTIONS, EVAL, NEURONS, STEER
from emoneurons.io.cards_file import parse_cards
from emoneurons.io.directions_file import parse_directions
from emoneurons.io.eval_file import parse_eval
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.io.steer_file import parse_steer
from emoneurons.report.atlas.figures import ATLAS_FIGURES, DIRECTIONS_FIGURE, atlas_figures
from emoneurons.report.atlas.tables import ModelRun, atlas_tables, directions_row
from emoneurons.report.atlas.write import write_atlas
from emoneurons.runtime.atlas_runs import ATLAS_RECORDS, AtlasRunError, load_model_run
from helpers.figure_layout import layout_faults, steer_json
from helpers.synthetic_inputs import synthetic_directions
from helpers.synthetic_run import synthetic_run

CARDS = {"top_neurons": 1, "contexts": 5, "emotions": {e: {"selected": 1, "cards": [{"top_tokens": [{"token": " x"}]}]} for e in EMOTIONS}}


def _run(name: str, model: str, seed: int, layers: int, directions: dict | None) -> ModelRun:
    run = synthetic_run(seed=seed, layers=layers)
    parsed = None if directions is None else parse_directions(directions)
    return ModelRun(name, model, parse_eval(run["eval"]), parse_neurons(run["neurons"]), parse_steer(steer_json()),
                    parse_cards(CARDS), "abc.dir", parsed)


def test_directions_row_by_hand():
    record = synthetic_directions(layers=5)
    row = directions_row(parse_directions(record))
    assert row["strongest_depth"] == record["strongest_layer"] / 5 and row["depth"] == [0, 0.2, 0.4, 0.6, 0.8]
    assert row["separation"] == record["by_layer"]["separation"]
    assert row["valence"] == record["geometry"]["valence"]
    assert row["alignment"]["anger"]["p"] == record["alignment"]["emotions"]["anger"]["p"]
    assert directions_row(None) is None and directions_row(parse_directions({"enabled": False})) is None


def test_figure_and_section_for_two_depths_and_a_model_without(tmp_path):
    runs = [_run("e1", "embedded", 0, 30, synthetic_directions(layers=30, seed=1)),
            _run("e2", "embedded-gemma3", 1, 18, synthetic_directions(layers=18, seed=2))]
    figures = atlas_figures(atlas_tables(runs))
    assert tuple(figures) == (*ATLAS_FIGURES, DIRECTIONS_FIGURE)
    assert layout_faults(figures[DIRECTIONS_FIGURE]) == []
    third = _run("e3", "other", 2, 8, None)
    out = write_atlas([*runs, third], tmp_path / "atlas")
    assert (out / "figures" / f"{DIRECTIONS_FIGURE}.png").stat().st_size > 1000
    markdown = (out / "atlas.md").read_text()
    assert "## Emotion directions in the residual stream" in markdown and "no directions in the runs of other" in markdown
    tables = json.loads((out / "atlas.json").read_text())
    assert tables["directions"]["other"] is None and tables["directions"]["embedded"]["layers"] == 30
    strongest = tables["directions"]["embedded-gemma3"]["strongest_layer"]
    assert f"{strongest} of 18 ({strongest / 18:.2f})" in markdown
    # no model with directions: no figure, no section
    plain = write_atlas([_run("e1", "a", 0, 8, None), _run("e2", "b", 1, 5, {"enabled": False})], tmp_path / "plain")
    assert not (plain / "figures" / f"{DIRECTIONS_FIGURE}.png").exists()
    assert "Emotion directions" not in (plain / "atlas.md").read_text()


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo: Path, directions: dict | str | None) -> str:
    run = synthetic_run(seed=0, layers=6)
    records = {EVAL: run["eval"], NEURONS: run["neurons"], STEER: steer_json(), CARDS_FILE: CARDS}
    for artifact in ATLAS_RECORDS:
        (repo / artifact.path).parent.mkdir(parents=True, exist_ok=True)
        (repo / artifact.path).write_text(json.dumps(records[artifact]))
    target = repo / DIRECTIONS.path
    if directions is None:
        target.unlink(missing_ok=True)
    else:
        target.write_text(directions if isinstance(directions, str) else json.dumps(directions))
    (repo / "params.yaml").write_text("model:\n  id: embedded\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "run")
    return _git(repo, "rev-parse", "HEAD")


def test_the_runs_directions_are_read_at_the_revision(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    record = synthetic_directions()
    with_directions = _commit(repo, record)
    without = _commit(repo, None)
    assert load_model_run(repo, with_directions).directions == parse_directions(
        record, f"experiment {with_directions}: {DIRECTIONS.path}")
    assert load_model_run(repo, without).directions is None
    broken = json.loads(json.dumps(record))
    broken["geometry"]["valence"].pop("pc1_is_valence")
    bad = _commit(repo, broken)
    with pytest.raises(AtlasRunError, match=rf"^experiment {bad}: {DIRECTIONS.path}: geometry: valence: pc1_is_valence is missing"):
        load_model_run(repo, bad)
    garbled = _commit(repo, "{not json")
    with pytest.raises(AtlasRunError, match=rf"^experiment {garbled}: {DIRECTIONS.path}: not valid JSON"):
        load_model_run(repo, garbled)
