"""stages/directions.py on a tiny random Llama saved to a folder: its outputs read back through
io/directions_file.py; the train split streamed in chunks gives the sums of one pass; off, it runs
no model; bad input is one line before any work, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

from emoneurons.emotions import EMOTIONS
from emoneurons.io.directions_file import DirectionsFileError, parse_directions, read_class_sums, read_directions
from emoneurons.io.neurons_file import read_neurons
from emoneurons.io.tables import read_counts
from emoneurons.model.loading import LoadedModel
from emoneurons.neurons.count_inputs import ParquetDialogues
from emoneurons.neurons.direction_run import SummedTokens, run_directions
from emoneurons.neurons.directions import ClassSums, accumulate_class_sums
from emoneurons.params import load_params
from emoneurons.runtime.stage_run import stage_ending
from helpers.stage_runner import REPO, run_stage_script, stage_main
from helpers.synthetic_inputs import synthetic_split

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_tokenizer) -> Path:
    from helpers.tiny_models import build_tiny_llama

    root = tmp_path_factory.mktemp("directions")
    model = build_tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(root / "model")
    tiny_tokenizer.save_pretrained(root / "model")
    (root / "data/split").mkdir(parents=True)
    synthetic_split(3).write_parquet(root / "data/split/train.parquet")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(id=str(root / "model"), batch_size=4)
    params["select"].update(top_rate=0.05, filter_rate=0.5, activation_bar_ratio=0.5)
    params["eval"]["ratios"] = [0.05]
    params["directions"]["control_draws"] = 20
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    stage_main("count")(params=root / "params.yaml", train=root / "data/split/train.parquet", out=root / "data/counts",
                        checkpoints=root / "ckpt")
    stage_main("select_neurons")(params=root / "params.yaml", counts=root / "data/counts", out=root / "data/neurons",
                                 metrics=root / "neurons-metrics.json")
    return root


def run_main(root: Path, **paths) -> None:
    stage_main("directions")(params=paths.get("params", root / "params.yaml"), train=paths.get("train", root / "data/split/train.parquet"),
                             counts=root / "data/counts", neurons=root / "data/neurons/neurons.json",
                             out=paths.get("out", root / "data/directions"), summary=paths.get("summary", root / "directions.json"))


def test_outputs_read_back_and_the_streamed_sums_are_one_pass(project, tiny_tokenizer):
    run_main(project)
    summary = read_directions(project / "directions.json")
    assert summary.enabled and summary.layers == 4 and summary.hidden == 32
    assert summary.write_direction == "down_proj column"
    assert set(summary.emotions) <= set(EMOTIONS) and summary.emotions  # the emotions select gave neurons
    for alignment in summary.emotions.values():
        assert alignment.draws == 20 and 1 / 21 <= alignment.p["abs_cos"] <= 1
    # the controls are mask-eval's null: eval.controls' first kind, in eval.activity_bins bins
    assert (summary.alignment["control"], summary.alignment["activity_bins"]) == ("matched", 20)
    sums = read_class_sums(project / "data/directions")
    train = pl.read_parquet(project / "data/split/train.parquet")
    assert sums["tokens"].tolist() == [summary.summed["tokens"][e] for e in EMOTIONS]
    assert sums["dialogues"].tolist() == [train.filter(pl.col("theme") == e).height for e in EMOTIONS]
    # The stage's pieces (here 5 dialogues each) add up to one call over the whole split.
    params = load_params(project / "params.yaml")
    tokens = SummedTokens(text="dialogue", positions="all", skip_cue_tokens=False, prompt_format="auto")
    chunked = run_directions(params.model, tokens, params.directions, train=ParquetDialogues(project / "data/split/train.parquet"),
                             counts=project / "data/counts", neurons=read_neurons(project / "data/neurons/neurons.json"),
                             top_rate=0.05, control="matched", activity_bins=params.eval.activity_bins, chunk=5)
    lm = LoadedModel(model=chunked_model(project), tokenizer=tiny_tokenizer, name="tiny")
    whole = ClassSums.for_model(lm)
    accumulate_class_sums(lm, train["dialogue"].to_list(), train["theme"].to_list(), whole, text="dialogue",
                          positions="all", batch_size=4, max_length=1024, prompt_format=None)
    for name, tensor in whole.tensors().items():  # other batches: float32 forwards differ in the last bits
        torch.testing.assert_close(chunked.sums.tensors()[name], tensor, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(sums[name], tensor, rtol=1e-5, atol=1e-4)
    assert chunked.record["by_layer"]["separation"] == pytest.approx(summary.by_layer["separation"], rel=1e-4)


def test_one_progress_bar_over_the_whole_split(project, capsys):
    """Fed a piece at a time, the stage still shows one bar over all the train dialogues (its ETA
    is for the stage, not for the piece): every bar line counts toward the split's size."""
    import re

    params = load_params(project / "params.yaml")
    tokens = SummedTokens(text="dialogue", positions="all", skip_cue_tokens=False, prompt_format="auto")
    train = ParquetDialogues(project / "data/split/train.parquet")
    run_directions(params.model, tokens, params.directions, train=train, counts=project / "data/counts",
                   neurons=read_neurons(project / "data/neurons/neurons.json"), top_rate=0.05, control="matched",
                   activity_bins=params.eval.activity_bins, chunk=5)
    bars = re.findall(r"directions: +\d+%\|[^|]*\| *(\d+)/(\d+)", capsys.readouterr().err)
    assert bars and {total for _, total in bars} == {str(len(train))}
    assert bars[-1][0] == str(len(train)) and len(train) > 5  # more than one piece, one bar to the end


def chunked_model(project: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(project / "model").eval()


def test_off_runs_no_model_and_says_so(project, tmp_path):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["directions"]["enabled"] = False
    params["model"]["id"] = str(tmp_path / "no-model-here")  # would fail to load: it is never loaded
    (tmp_path / "no-model-here").mkdir()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run_main(project, params=tmp_path / "params.yaml", out=tmp_path / "sums", summary=tmp_path / "directions.json")
    assert read_directions(tmp_path / "directions.json").enabled is False
    assert json.loads((tmp_path / "sums/meta.json").read_text()) == {"enabled": False}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("unknown_theme", "train.parquet: column 'theme': unknown emotion 'joy'; allowed: anger, disgust, fear, happiness, sadness, surprise"),
        ("no_fear", "train.parquet: no dialogues for emotion(s) fear: every emotion needs tokens"),
        ("no_dialogue_column", "train.parquet: no column 'dialogue' (has "),
        ("top_rate", "neurons.json: no selection at ratio 0.02 (has: 0.05); rerun select"),
    ],
)
def test_bad_input_is_one_line_before_any_work(project, tmp_path, capsys, change, message):
    train = pl.read_parquet(project / "data/split/train.parquet")
    params = yaml.safe_load((project / "params.yaml").read_text())
    if change == "unknown_theme":
        train = train.with_columns(pl.when(pl.col("theme") == "happiness").then(pl.lit("joy")).otherwise(pl.col("theme")).alias("theme"))
    elif change == "no_fear":
        train = train.filter(pl.col("theme") != "fear")
    elif change == "no_dialogue_column":
        train = train.drop("dialogue")
    else:
        params["select"]["top_rate"] = 0.02
    params["model"]["id"] = str(tmp_path / "no-model-here")  # bad input is found before the model would load
    (tmp_path / "no-model-here").mkdir()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    train.write_parquet(tmp_path / "train.parquet")
    args = {"params": tmp_path / "params.yaml", "train": tmp_path / "train.parquet", "counts": project / "data/counts",
            "neurons": project / "data/neurons/neurons.json", "out": tmp_path / "sums", "summary": tmp_path / "directions.json"}
    if change == "unknown_theme":  # once as dvc runs it: a process, its exit status and stderr
        result = run_stage_script("directions", *(f"--{k}={v}" for k, v in args.items()), cwd=tmp_path)
        returncode, stderr = result.returncode, result.stderr
    else:
        with pytest.raises(SystemExit) as exited, stage_ending("directions"):
            stage_main("directions")(**args)
        returncode, stderr = exited.value.code, capsys.readouterr().err
    assert returncode == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], stderr
    assert not (tmp_path / "sums").exists() and not (tmp_path / "directions.json").exists()


def test_counts_of_another_model_are_one_line(project, tmp_path, capsys):
    """Counts of a 5-layer model: against select's neurons.json before the model loads; with a
    neurons.json that agrees with them, against the (4-layer) model after it loads."""
    from safetensors.torch import save_file

    f, T = read_counts(project / "data/counts")
    (tmp_path / "counts").mkdir()
    save_file({"f": torch.zeros(f.shape[0] + 1, f.shape[1], 6, dtype=torch.int64), "T": T}, tmp_path / "counts/counts.safetensors")
    neurons = json.loads((project / "data/neurons/neurons.json").read_text())
    (tmp_path / "neurons.json").write_text(json.dumps({**neurons, "layers": 5}))
    counts_file = tmp_path / "counts/counts.safetensors"
    for selected, after in ((project / "data/neurons/neurons.json", f"{project / 'data/neurons/neurons.json'} was selected on [4, 64]"),
                            (tmp_path / "neurons.json", "the model has [4, 64]")):
        with pytest.raises(SystemExit, match="^1$"), stage_ending("directions"):
            stage_main("directions")(params=project / "params.yaml", train=project / "data/split/train.parquet",
                                     counts=tmp_path / "counts", neurons=selected, out=tmp_path / "sums",
                                     summary=tmp_path / "directions.json")
        lines = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("Loading weights")]
        assert lines == [f"{counts_file}: counts are [5 layers, 64 neurons], {after}; rerun count and select for this model"]
        assert not (tmp_path / "sums").exists() and not (tmp_path / "directions.json").exists()


def test_a_malformed_summary_is_one_line_naming_the_key(project):
    good = json.loads((project / "directions.json").read_text()) if (project / "directions.json").exists() else None
    if good is None:
        run_main(project)
        good = json.loads((project / "directions.json").read_text())
    assert parse_directions(good).enabled
    broken = json.loads(json.dumps(good))
    del broken["geometry"]["coordinates"]["sadness"]
    with pytest.raises(DirectionsFileError, match=r"^x.json: geometry: coordinates: sadness is missing \(see docs/CONTRACTS.md"):
        parse_directions(broken, "x.json")
    broken = json.loads(json.dumps(good))
    broken["by_layer"]["separation"] = broken["by_layer"]["separation"][:-1]
    with pytest.raises(DirectionsFileError, match=r"^x.json: by_layer: separation has not one entry per layer \(4\)"):
        parse_directions(broken, "x.json")
    broken = json.loads(json.dumps(good))
    emotion = next(iter(broken["alignment"]["emotions"]))
    broken["alignment"]["emotions"][emotion]["p"]["abs_cos"] = "small"
    with pytest.raises(DirectionsFileError, match=rf"^x.json: alignment: emotions: {emotion}: p: abs_cos: 'small' is not int or float"):
        parse_directions(broken, "x.json")
    with pytest.raises(DirectionsFileError, match=r"^x.json: enabled is missing"):
        parse_directions({}, "x.json")
