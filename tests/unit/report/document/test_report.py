"""report.md, index.html and the plot stage, from the synthetic run (tests/helpers/synthetic_run.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from emoneurons.emotions import EMOTIONS
from emoneurons.io.eval_file import parse_eval
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.params import parse_params
from emoneurons.report.document.html import inline
from emoneurons.report.document.markdown import render_markdown
from emoneurons.report.document.run_report import build_report
from emoneurons.report.figures.paper_figures import FIGURE_NAMES
from emoneurons.report.results.accuracy import baseline_clear
from emoneurons.report.results.run import RunMetrics, params_digest
from helpers.repo_params import params_dict
from helpers.stage_runner import REPO
from helpers.synthetic_run import png_size, synthetic_run, write_run

# -P: stages/ holds select.py, which would shadow the standard library's `select` module if the
# script's folder were put first on sys.path (plain `python stages/plot.py` does that).
STAGE = [sys.executable, "-P", str(REPO / "stages" / "plot.py")]


def metrics_of(run: dict) -> RunMetrics:
    return RunMetrics(filter=run["filter"], meta=run["meta"], neurons=parse_neurons(run["neurons"]),
                      eval=parse_eval(run["eval"]), neuron_metrics=run["neuron_metrics"],
                      params=parse_params(run["params"]))


def table_after(markdown: str, caption_start: str) -> list[list[str]]:
    """The rows (header first) of the markdown table whose italic caption starts so."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"*{caption_start}"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return [rows[0]] + rows[2:]  # drop the alignment rule


def cell(table: list[list[str]], row: str, column: str) -> str:
    header = table[0]
    found = next(r for r in table[1:] if r[0] == row)
    return found[header.index(column)]


@pytest.fixture(scope="module")
def run() -> dict:
    return synthetic_run(seed=1)


@pytest.fixture(scope="module")
def markdown(run) -> str:
    return render_markdown(build_report(metrics_of(run)))


def test_report_numbers_match_the_metrics(run, markdown):
    table1 = table_after(markdown, "Dialogues kept per intended emotion")
    assert int(cell(table1, "sadness", "count")) == run["filter"]["table1"]["sadness"]["count"]
    assert float(cell(table1, "fear", "percentage (%)")) == run["filter"]["table1"]["fear"]["percent"]

    base = run["eval"]["conditions"][0]
    baseline = table_after(markdown, "Unmodified accuracy per true emotion")
    for e in EMOTIONS:
        assert float(cell(baseline, e, "accuracy (%)")) == pytest.approx(
            100 * base["accuracy"][e], abs=0.05)

    own = table_after(markdown, "Each emotion's accuracy when its own neurons are masked")
    masked = next(c for c in run["eval"]["conditions"] if c["id"] == "mask-disgust-r0.01-all")
    change = 100 * (masked["accuracy"]["disgust"] - base["accuracy"]["disgust"])
    assert float(cell(own, "disgust", "change (pp)")) == pytest.approx(change, abs=0.05)

    neurons = table_after(markdown, "Emotion neurons per emotion (top 1%)")
    assert int(cell(neurons, "anger", "neurons")) == run["neuron_metrics"]["neurons_anger"]

    overlap = table_after(markdown, "Overlap ratio (%) between emotion neuron sets")
    sets = run["neurons"]["ratios"]["0.01"]["neurons"]
    a = {tuple(p) for p in sets["anger"]}
    d = {tuple(p) for p in sets["disgust"]}
    assert float(cell(overlap, "anger", "disgust")) == pytest.approx(
        100 * len(a & d) / len(a | d), abs=0.05)
    assert float(cell(overlap, "fear", "fear")) == 100.0

    ratios = table_after(markdown, "Accuracy change vs unmodified (pp)")
    row = next(r for r in ratios[1:] if r[0] == "fear" and r[1] == "3")
    m3 = next(c for c in run["eval"]["conditions"] if c["id"] == "mask-fear-r0.03-all")
    assert float(row[ratios[0].index("happiness")]) == pytest.approx(
        100 * (m3["accuracy"]["happiness"] - base["accuracy"]["happiness"]), abs=0.05)


def test_failure_table_rows_sum_to_100(run, markdown):
    failures = table_after(markdown, "Share (%) of the masked emotion's failures")
    for row in failures[1:]:
        name = row[0]
        assert row[1 + EMOTIONS.index(name)] == "-"  # the correct answer is not a failure
        shares = [float(v) for v in row[1:7] if v not in ("n/a", "-")]
        if int(row[7]) > 0:
            assert sum(shares) == pytest.approx(100.0, abs=0.5)
        else:
            assert shares == []  # no failures: marked n/a, not zeros


def test_report_embeds_every_figure_and_the_paper(markdown, run):
    for name in FIGURE_NAMES:
        assert f"(figures/{name}.png)" in markdown
    assert "## Against the paper" in markdown
    for published in ("1,882", "1,070", "8,314", "4,976", "96.11", "37.22", "93.17", "73.83",
                      "about 48%"):
        assert published in markdown
    assert "not directly comparable" in markdown and "`template` backend" in markdown
    assert "|A∩B| / |A∪B|" in markdown
    assert params_digest(parse_params(run["params"])) in markdown
    assert len(params_digest(parse_params(run["params"]))) == 12


def test_report_says_when_baseline_is_not_above_chance():
    weak = synthetic_run(seed=2, baseline_correct=0)
    clear, accuracy, low, chance = baseline_clear(parse_eval(weak["eval"]))
    assert not clear and low <= chance
    text = render_markdown(build_report(metrics_of(weak)))
    assert "not clearly above chance" in text
    strong = synthetic_run(seed=2, baseline_correct=5)
    assert baseline_clear(parse_eval(strong["eval"]))[0]
    assert "not clearly above chance" not in render_markdown(build_report(metrics_of(strong)))


def test_params_digest_tracks_values_not_key_order():
    a = parse_params(params_dict({"select": {"top_rate": 0.01}, "eval": {"shots": 1}}))
    b = parse_params(dict(reversed(params_dict({"eval": {"shots": 1}, "select": {"top_rate": 0.01}}).items())))
    c = parse_params(params_dict({"select": {"top_rate": 0.02}, "eval": {"shots": 1}}))
    assert params_digest(a) == params_digest(b) != params_digest(c)


def test_html_inline_markup_is_escaped():
    assert inline("a <b> `x<y>` **bold**") == (
        "a &lt;b&gt; <code>x&lt;y&gt;</code> <strong>bold</strong>")


def test_plot_stage_on_a_synthetic_workspace(tmp_path, run):
    write_run(tmp_path, run)
    result = subprocess.run(
        STAGE, cwd=tmp_path, capture_output=True,
        text=True, env={**os.environ, "MPLBACKEND": "Agg"}, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    reports = tmp_path / "reports"
    for name in FIGURE_NAMES:
        width, height = png_size(reports / "figures" / f"{name}.png")
        assert width >= 1000 and height >= 700
        assert (reports / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    report = (reports / "report.md").read_text()
    for link in re.findall(r"\]\((figures/[^)]+)\)", report):
        assert (reports / link).is_file(), link
    page = (reports / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(FIGURE_NAMES)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "<table>" in page and "Against the paper" in page
    plots = reports / "plots"
    assert (plots / "per_layer.csv").read_text().splitlines()[0] == "layer,emotion,neurons"
    assert (plots / "ratio_sweep.csv").read_text().splitlines()[0] == (
        "ratio,masked,emotion,condition,accuracy_change")
    assert {p.name for p in (plots / "confusion").iterdir()} == {
        "unmodified.json", *(f"mask-{e}.json" for e in EMOTIONS)}
    assert not [p for p in reports.rglob(".*") if p.name.endswith(".tmp")]


def test_plot_stage_fails_in_one_line_and_writes_nothing(tmp_path, run):
    write_run(tmp_path, run)
    (tmp_path / "reports" / "metrics" / "eval.json").unlink()
    result = subprocess.run(
        STAGE, cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "reports/metrics/eval.json" in lines[0]
    assert not (tmp_path / "reports" / "figures").exists()
    assert not (tmp_path / "reports" / "report.md").exists()
    assert not (tmp_path / "reports" / "plots").exists()

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_dict({"select": {"top_rate": 2}})))
    (tmp_path / "reports" / "metrics" / "eval.json").write_text(json.dumps(run["eval"]))
    result = subprocess.run(
        STAGE, cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "select.top_rate" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "reports" / "figures").exists()


def test_dvc_plots_definitions_render(tmp_path, run):
    """The repo's dvc.yaml `plots:` definitions, over plot data written by the plot code: `dvc plots
    show --json` renders every plot."""
    from emoneurons.report.figures.plots_data import plots_data, write_plots_data

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "-q"], cwd=tmp_path, check=True, env=env)
    plots_section = {"plots": yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(plots_section))
    write_plots_data(tmp_path / "reports" / "plots", plots_data(parse_neurons(run["neurons"]), parse_eval(run["eval"])))
    shown = subprocess.run([*dvc, "plots", "show", "--json"], cwd=tmp_path, capture_output=True,
                           text=True, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert not data.get("errors"), data.get("errors")
    rendered = {key: plots[0]["content"] for key, plots in data["data"].items()}
    for expected in ("reports/plots/per_layer_wide.csv", "reports/plots/ratio_sweep_target.csv",
                     "reports/plots/layer_sweep_target.csv",
                     "reports/plots/confusion/unmodified.json"):
        assert expected in rendered, (expected, sorted(rendered))
        values = rendered[expected].get("data", {}).get("values") or rendered[expected].get(
            "spec", {}).get("data", {}).get("values")
        assert values, expected


def test_report_states_specificity_per_emotion_and_ratio_with_the_rule(run, markdown):
    assert run["eval"]["effects"]["rule"] in markdown
    grid = table_after(markdown, "Verdict per emotion, ratio and layer range")
    short = {"specific": "specific", "not distinguishable from random": "not distinguishable", "not enough data": "not enough data"}
    for c in run["eval"]["conditions"]:
        if c["kind"] != "mask":
            continue
        assert cell(grid, c["masked"], f"{100 * c['ratio']:g}% {c['layers']}") == short[c["vs_control"]["verdict"]]
    detail = table_after(markdown, "Every masked condition against its random-neuron controls")
    first = next(c for c in run["eval"]["conditions"] if c["kind"] == "mask")
    row = detail[1]
    header = detail[0]
    assert row[header.index("verdict")] == first["vs_control"]["verdict"]
    assert float(row[header.index("Holm p")]) == pytest.approx(first["vs_control"]["p_holm"], rel=1e-2)
    assert "![Figure 2 (effect)" in markdown and "![Figure 3 (effect)" in markdown


def test_report_without_effects_says_so():
    old = synthetic_run(seed=2)
    old["eval"] = {k: v for k, v in old["eval"].items() if k != "effects"}
    text = render_markdown(build_report(metrics_of(old)))
    assert "no paired effects" in text and "Emotion neurons vs random neurons" not in text


def test_report_shows_a_judge_at_chance():
    flagged = synthetic_run(seed=4)
    flagged["filter"] |= {"judge_agreement_ci95": {"lexicon": [0.76, 0.89], "smollm": [0.13, 0.27]},
                          "judge_chance": 0.1667, "judges_at_chance": ["smollm"]}
    text = render_markdown(build_report(metrics_of(flagged)))
    judges = table_after(text, "Judges")
    assert cell(judges, "smollm", "above chance") == "no" and cell(judges, "lexicon", "above chance") == "yes"
    assert cell(judges, "smollm", "95% CI (%)") == "[13.0, 27.0]"
    assert "**Warning: judge(s) `smollm` at chance**" in text


def test_report_gives_the_verdict_against_each_null_and_whether_specific_survives_matching():
    nulls = synthetic_run(seed=1, nulls=True)
    text = render_markdown(build_report(metrics_of(nulls)))
    masks = {c["id"]: c for c in nulls["eval"]["conditions"] if c["kind"] == "mask" and not c.get("scale")}
    grid = table_after(text, "Verdict per emotion, ratio and layer range, against matched / uniform controls")
    short = {"specific": "specific", "not distinguishable from random": "not distinguishable", "not enough data": "not enough data"}
    for c in masks.values():
        assert cell(grid, c["masked"], f"{100 * c['ratio']:g}% {c['layers']}") == \
            f"{short[c['vs_matched']['verdict']]} / {short[c['vs_control']['verdict']]}"
    survival = table_after(text, "Does 'specific' survive activity matching?")
    for emotion in EMOTIONS:
        mask = masks[f"mask-{emotion}-r0.01-all"]
        matched, uniform = mask["vs_matched"]["verdict"], mask["vs_control"]["verdict"]
        expected = ("yes" if uniform == "specific" else "specific against matched controls only") if matched == "specific" else \
            "no: specific against uniform controls only" if uniform == "specific" else "not specific against either"
        assert cell(survival, emotion, "specific survives matching?") == expected
        assert cell(survival, emotion, "verdict") == matched
    assert {row[-1] for row in survival[1:]} >= {"yes", "no: specific against uniform controls only"}  # both outcomes shown
    detail = table_after(text, "Every masked condition against its random-neuron controls (matched")
    assert detail[0][-2:] == ["verdict", "verdict vs uniform"]
    draws = table_after(text, "Each covered condition's mean effect among its control draws' mean effects")
    anger = nulls["eval"]["draw_null"]["conditions"]["mask-anger-r0.01-all"]
    assert cell(draws, "anger", "rank") == f"{anger['rank']} of 10"
    assert cell(draws, "anger", "draws: range") == f"[{min(anger['draws']):.3f}, {max(anger['draws']):.3f}]"
    assert "48 extra masked runs" in text and "4,321 tokens computed" in text
    doses = table_after(text, "Mean effect at each factor")
    assert cell(doses, "anger", "monotone") == "yes" and cell(doses, "disgust", "monotone") == "no (1 reversal(s))"
    assert "3 of 6 emotions' effects are monotone" in text
    # A run without them says they did not run, and still links both figures.
    plain = render_markdown(build_report(metrics_of(synthetic_run(seed=1))))
    assert "Does 'specific' survive activity matching?" not in plain
    assert "eval.null_draws: 0" in plain and "eval.scales: []" in plain
    assert "(figures/draw_null.png)" in plain and "(figures/dose_response.png)" in plain
