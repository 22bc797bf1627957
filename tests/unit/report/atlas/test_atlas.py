"""The atlas (report/atlas/: tables, figures, write; runtime/atlas_runs.py reads the runs): its tables on
hand-built per-model records (values worked out by hand), its figures' layout, the offline page,
and `emoneurons atlas --from-experiments` on git revisions of a temporary repo (bad input: one line)."""

from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emoneurons.cli import app
from emoneurons.emotions import EMOTIONS
from emoneurons.io.artifacts import CARDS, EVAL, NEURONS, STEER, Artifact
from emoneurons.io.cards_file import parse_cards
from emoneurons.io.eval_file import parse_eval
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.io.steer_file import parse_steer
from emoneurons.report.atlas.figures import ATLAS_FIGURES, atlas_figures
from emoneurons.report.atlas.tables import (
    ModelRun,
    atlas_tables,
    depth_bin,
    depth_shares,
    jaccard,
    neurons_by_depth,
    normalise_token,
    profile_overlap,
    same_vs_other,
    steering_rows,
    token_profile,
    verdict_rows,
)
from emoneurons.report.atlas.write import AtlasError, write_atlas
from emoneurons.report.errors import ReportDataError
from emoneurons.runtime.atlas_runs import ATLAS_RECORDS
from helpers.figure_layout import layout_faults, steer_json
from helpers.synthetic_run import synthetic_run


def _cards(tokens: dict[str, list[str]]) -> dict:
    """cards.json with one card per emotion listing `tokens[emotion]` as its top tokens."""
    return {"top_neurons": 1, "contexts": 5, "emotions": {e: {"selected": 1, "cards": [{"top_tokens": [{"token": t} for t in tokens.get(e, [])]}]}
                         for e in EMOTIONS}}


CARDS_A = _cards({"anger": [" angry", " furious", " the"], "fear": [" scared"]})
CARDS_B = _cards({"anger": ["▁Angry", "Ġmad", "the"], "fear": [" calm"], "sadness": [" sad"]})


def _run(name: str, model: str, seed: int, layers: int, steer: dict | None = None, cards: dict = CARDS_A,
         split: str | None = "abc.dir", nulls: bool = False) -> ModelRun:
    run = synthetic_run(seed=seed, layers=layers, nulls=nulls)
    return ModelRun(name, model, parse_eval(run["eval"]), parse_neurons(run["neurons"]), parse_steer(steer or steer_json()),
                    parse_cards(cards), split)


# --------------------------------------------------------------------------------------------
# The tables


def test_relative_depth_bins_by_hand():
    # 5 bins of layer / layers: 10 layers -> two per bin; 4 layers -> bins 0, 1, 2, 3 (bin 4 empty).
    assert [depth_bin(layer, 10) for layer in range(10)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [depth_bin(layer, 4) for layer in range(4)] == [0, 1, 2, 3]
    assert [depth_bin(layer, 18) for layer in (0, 3, 4, 17)] == [0, 0, 1, 4]  # 5*3//18 = 0, 5*4//18 = 1
    with pytest.raises(ReportDataError, match="layer 4 outside 0..3"):
        depth_bin(4, 4)
    binned = neurons_by_depth({"anger": [1, 2, 0, 3], "fear": [0, 0, 0, 0]})
    assert binned == {"anger": [1, 2, 0, 3, 0], "fear": [0] * 5}
    shares = depth_shares(binned)
    assert shares["anger"] == [1 / 6, 2 / 6, 0, 3 / 6, 0]
    assert all(math.isnan(s) for s in shares["fear"])  # no neurons: no shares, not zeros


def test_token_profiles_and_their_overlap_by_hand():
    assert normalise_token("▁Angry") == normalise_token("Ġangry") == normalise_token(" angry ") == "angry"
    a, b = token_profile(parse_cards(CARDS_A), "anger"), token_profile(parse_cards(CARDS_B), "anger")
    assert a == {"angry", "furious", "the"} and b == {"angry", "mad", "the"}
    assert jaccard(a, b) == 2 / 4  # {angry, the} of {angry, furious, mad, the}
    assert math.isnan(jaccard(set(), set()))
    matrix = profile_overlap({e: token_profile(parse_cards(CARDS_A), e) for e in EMOTIONS},
                             {e: token_profile(parse_cards(CARDS_B), e) for e in EMOTIONS})
    anger, fear, sadness = EMOTIONS.index("anger"), EMOTIONS.index("fear"), EMOTIONS.index("sadness")
    assert matrix[anger][anger] == 0.5 and matrix[fear][fear] == 0.0  # {scared} vs {calm}
    assert matrix[anger][sadness] == 0.0 and matrix[fear][anger] == 0.0
    assert math.isnan(matrix[EMOTIONS.index("disgust")][EMOTIONS.index("disgust")])  # neither model lists tokens
    # Same emotion: anger 1/2, fear 0, sadness 0 ({} vs {sad}); the three others NaN. Every other pairing: 0.
    assert same_vs_other(matrix) == pytest.approx((1 / 6, 0.0))


def test_verdicts_are_mask_evals_at_the_selection_ratio_on_all_layers():
    run = _run("e1", "embedded", 0, 8)
    by_id = {c.id: c for c in run.eval.conditions}
    rows = verdict_rows(run)
    assert [r["emotion"] for r in rows] == list(EMOTIONS)
    for row in rows:
        tested = by_id[f"mask-{row['emotion']}-r0.01-all"]
        assert row["verdict"] == tested.vs_control["verdict"] and row["p_holm"] == tested.vs_control["p_holm"]
        assert row["effect"] == tested.effect["delta_masked"]["mean"]
    assert {r["verdict"] for r in rows} >= {"specific", "not distinguishable from random"}
    # An emotion not masked at that ratio reads "not enough data", with no numbers.
    run = replace(run, eval=replace(run.eval, conditions=tuple(c for c in run.eval.conditions if c.id != "mask-anger-r0.01-all")))
    anger = verdict_rows(run)[0]
    assert anger["verdict"] == "not enough data" and math.isnan(anger["effect"])


def test_verdicts_against_the_stronger_nulls_are_eval_jsons():
    from helpers.synthetic_run import MATCHED_VERDICTS

    run = _run("e1", "embedded", 0, 8, nulls=True)
    by_id = {c.id: c for c in run.eval.conditions}
    record = run.eval.draw_null["conditions"]
    for row in verdict_rows(run):
        tested = by_id[f"mask-{row['emotion']}-r0.01-all"]
        assert row["null"] == "matched" and row["verdict"] == tested.vs_matched["verdict"] == MATCHED_VERDICTS[row["emotion"]]
        assert row["control"] == tested.vs_matched["control_mean"]
        assert row["verdicts"] == {"matched": tested.vs_matched["verdict"], "uniform": tested.vs_control["verdict"]}
        entry = record[tested.id]
        assert (row["draw_verdict"], row["draw_verdict_normal"], row["draw_rank"], row["draws"]) == \
            (entry["verdict"], entry["verdict_normal"], entry["rank"], 9)
        assert row["monotone"] == run.eval.dose_response["emotions"][row["emotion"]]["monotone"]
    survives = {r["emotion"]: r["survives_matching"] for r in verdict_rows(run)}
    assert survives["anger"] in ("yes", "specific against matched controls only")
    # A run from before the nulls: its uniform verdict, nothing else to say.
    old = verdict_rows(_run("e1", "embedded", 0, 8))[0]
    assert old["null"] == "uniform" and old["draw_verdict"] is None and old["monotone"] is None
    assert old["survives_matching"].startswith("n/a")


def test_steering_rows_carry_the_coherence_flags():
    record = steer_json()
    rows = steering_rows(parse_steer(record))
    assert {(r["emotion"], r["alpha"]) for r in rows} == {(e, a) for e in EMOTIONS if e != "fear" for a in (0, 4, 8)}
    anger8 = next(r for r in rows if r["emotion"] == "anger" and r["alpha"] == 8)
    step = next(s for s in record["emotions"]["anger"]["steered"] if s["alpha"] == 8)
    control = next(c for c in record["emotions"]["anger"]["controls"] if c["alpha"] == 8)
    assert anger8["share_shift"] == step["share_shift"] and anger8["control_shift"] == control["share_shift"]
    assert anger8["text_broke"] is True and anger8["control_broke"] is True  # the fixture breaks every alpha 8
    assert all(r["text_broke"] is False for r in rows if r["alpha"] == 0)
    record.pop("coherence")
    for entry in record["emotions"].values():
        for c in entry["steered"] + entry["controls"]:
            c.pop("coherence")
    assert {r["text_broke"] for r in steering_rows(parse_steer(record))} == {None}  # before coherence: unknown, not "no"


def test_atlas_tables_baseline_and_the_same_data_check():
    runs = [_run("e1", "embedded", 0, 8), _run("e2", "embedded-gemma3", 1, 5, cards=CARDS_B)]
    tables = atlas_tables(runs)
    assert tables["models"] == ["embedded", "embedded-gemma3"] and tables["same_test_split"] is True
    base = tables["baseline"]["embedded"]
    unmodified = runs[0].eval.unmodified()
    assert base["accuracy"] == unmodified.accuracy["overall"] and base["ci95"] == list(unmodified.ci95["overall"])
    assert tables["depth"]["embedded-gemma3"]["layers"] == 5
    assert sum(tables["depth"]["embedded"]["counts"]["anger"]) == len(runs[0].neurons.selection(0.01).neurons["anger"])
    assert tables["profile_overlap"][0]["shared"]["anger"] == ["angry", "the"]
    other = _run("e2", "embedded-gemma3", 1, 5, split="other.dir")
    assert atlas_tables([runs[0], other])["same_test_split"] is False
    with pytest.raises(ReportDataError, match="model embedded appears in more than one experiment"):
        atlas_tables([runs[0], _run("e3", "embedded", 2, 8)])


# --------------------------------------------------------------------------------------------
# Figures and files


def test_atlas_figures_text_does_not_overlap_or_leave_the_canvas():
    runs = [_run("e1", "HuggingFaceTB/SmolLM2-135M-Instruct", 0, 30, nulls=True), _run("e2", "embedded-gemma3", 1, 18, cards=CARDS_B)]
    figures = atlas_figures(atlas_tables(runs))
    assert tuple(figures) == ATLAS_FIGURES
    for name, figure in figures.items():
        assert layout_faults(figure) == [], name
    # The atlas's plan steers at one alpha only: one panel, still room for the legend.
    tables = atlas_tables(runs)
    tables["steering"] = {m: [r for r in rows if r["alpha"] == 8] for m, rows in tables["steering"].items()}
    assert layout_faults(atlas_figures(tables)["atlas_steering"]) == []


def test_write_atlas_writes_strict_json_and_an_offline_page(tmp_path):
    runs = [_run("e1", "embedded", 0, 8), _run("e2", "embedded-gemma3", 1, 5, cards=CARDS_B)]
    out = write_atlas(runs, tmp_path / "atlas")
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(f"{n}.{x}" for n in ATLAS_FIGURES for x in ("png", "svg"))

    def no_nan(value):
        raise AssertionError(f"{value} in atlas.json")

    tables = json.loads((out / "atlas.json").read_text(), parse_constant=no_nan)
    assert tables["models"] == ["embedded", "embedded-gemma3"]
    page = (out / "atlas.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "<script" not in page and "http" not in page
    assert page.count('src="data:image/png;base64,') == len(ATLAS_FIGURES)  # every figure embedded
    markdown = (out / "atlas.md").read_text()
    assert all(f"figures/{n}.png" in markdown for n in ATLAS_FIGURES)
    assert "**specific**" in markdown and "**not distinguishable from random**" in markdown
    assert "## Against the stronger nulls" in markdown
    nulls = write_atlas([_run("e1", "embedded", 0, 8, nulls=True), runs[1]], tmp_path / "nulls")
    text = (nulls / "atlas.md").read_text()
    anger = next(line for line in text.split("## Against the stronger nulls")[1].splitlines() if line.startswith("| anger |"))
    assert "matched: specific / uniform: " in anger and "rank " in anger and "monotone" in anger
    with pytest.raises(AtlasError, match="at least two models"):
        write_atlas(runs[:1], tmp_path / "one")
    assert not (tmp_path / "one").exists()


# --------------------------------------------------------------------------------------------
# The command, on git revisions (an experiment is a commit; the command resolves names the same way)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def _commit_run(repo: Path, name: str, model: str, seed: int, layers: int, cards: dict = CARDS_A,
                skip: Artifact | None = None, eval_without: str | None = None) -> str:
    run = synthetic_run(seed=seed, layers=layers)
    run["eval"].pop(eval_without, None)
    records = {EVAL: run["eval"], NEURONS: run["neurons"], STEER: steer_json(), CARDS: cards}
    for artifact in ATLAS_RECORDS:
        target = repo / artifact.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if artifact == skip:
            target.unlink(missing_ok=True)
        else:
            target.write_text(json.dumps(records[artifact]))
    (repo / "params.yaml").write_text(f"model:\n  id: {model}\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", name)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, list[str]]:
    repo = tmp_path_factory.mktemp("atlas-repo")
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.invalid")
    _git(repo, "config", "user.name", "t")
    revs = [_commit_run(repo, "e1", "embedded", 0, 8),
            _commit_run(repo, "e2", "embedded-gemma3", 1, 5, cards=CARDS_B),
            _commit_run(repo, "e3", "other/model", 2, 5, skip=STEER),
            _commit_run(repo, "e4", "third/model", 3, 5, eval_without="conditions")]
    return repo, revs


def test_atlas_from_experiments_writes_the_atlas(repo, tmp_path):
    path, revs = repo
    result = CliRunner().invoke(app, ["atlas", "--from-experiments", f"{revs[0]},{revs[1]}", "--repo", str(path),
                                      "--out", str(tmp_path / "atlas")])
    assert result.exit_code == 0, result.output
    assert "atlas: embedded" in result.output and "embedded-gemma3" in result.output
    tables = json.loads((tmp_path / "atlas" / "atlas.json").read_text())
    assert tables["experiments"] == {"embedded": revs[0], "embedded-gemma3": revs[1]}


@pytest.mark.parametrize(("args", "line"), [
    (["--from-experiments", "{0},no-such-exp"], "experiment no-such-exp: not found in"),
    (["--from-experiments", "{0},{2}"], "experiment {2}: has no reports/steer/steer.json"),
    (["--from-experiments", "{0},{3}"], "experiment {3}: reports/metrics/eval.json: "),
    (["--from-experiments", "{0},{0}"], "atlas: model embedded appears in more than one experiment; one each"),
    (["--from-experiments", "{0}"], "atlas: needs at least two models' experiments, got 1"),
    ([], "atlas: give --models (run them) or --from-experiments (rebuild), one of the two"),
    (["--from-experiments", "{0},{1}", "-S", "eval.shots=0"], "atlas: -S applies to experiments it runs"),
], ids=["unknown experiment", "missing output", "eval.json malformed", "same model twice", "one model", "neither", "-S on rebuild"])
def test_atlas_bad_input_is_one_line_and_writes_nothing(repo, tmp_path, args, line):
    path, revs = repo
    args = [a.format(*revs) for a in args]
    result = CliRunner().invoke(app, ["atlas", *args, "--repo", str(path), "--out", str(tmp_path / "atlas")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line.format(*revs)), result.output
    assert not (tmp_path / "atlas").exists()
