"""What a stage prints agrees with what it wrote: its summary line's numbers are recounted here
from its record, on a tiny synthetic run, and the line starts a line of its own in the one stream
a log of `dvc repro` has (the progress bar's carriage returns and all). steer's line and bars are
checked where its stage runs (tests/unit/evaluate/test_steering.py)."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from emoneurons.emotions import EMOTIONS
from helpers.repo_params import params_yaml
from helpers.stage_runner import run_stage_script


def log_lines(output: str) -> list[str]:
    """The lines a log file shows: split at newlines only (a bar's `\\r` redraws stay in its line)."""
    return output.split("\n")


@pytest.mark.parametrize("text", ["dialogue", "prompt"])
def test_count_prints_its_counts_on_a_line_of_their_own(tmp_path, tiny_llama, text):
    tiny_llama.model.save_pretrained(tmp_path / "tiny")
    tiny_llama.tokenizer.save_pretrained(tmp_path / "tiny")
    (tmp_path / "data" / "split").mkdir(parents=True)
    dialogues = [f"A: {e}, {'really ' * k}{e}.\nB: Oh." for e in EMOTIONS for k in range(2)]
    pl.DataFrame({"theme": [e for e in EMOTIONS for _ in range(2)], "dialogue": dialogues}).write_parquet(
        tmp_path / "data/split/train.parquet")
    (tmp_path / "params.yaml").write_text(params_yaml({"model": {"id": str(tmp_path / "tiny"), "batch_size": 4},
                                                       "count": {"text": text}}))
    result = run_stage_script("count", "--checkpoints", tmp_path / "ck", cwd=tmp_path, merged=True)
    assert result.returncode == 0, result.stdout
    meta = json.loads((tmp_path / "data/counts/meta.json").read_text())
    # eval.prompt_format (auto) resolved once for the loaded model: what was counted inside and what meta.json says
    assert meta.get("prompt_format") == {"dialogue": None, "prompt": "chat"}[text]
    summary = [line for line in log_lines(result.stdout) if "counted tokens" in line]
    assert len(summary) == 1 and summary[0].startswith("count: "), result.stdout  # not glued to the bar
    found = re.fullmatch(r"count: (\d+) dialogues, (\d+) counted tokens \((.*)\); f \[(\d+), (\d+), 6\]", summary[0])
    assert found, summary[0]
    n, tokens, per_emotion, layers, neurons = found.groups()
    assert int(n) == sum(meta["dialogues"].values()) == len(dialogues)
    assert int(tokens) == sum(meta["tokens"].values()) > 0
    assert per_emotion == ", ".join(f"{e} {meta['tokens'][e]}" for e in EMOTIONS)
    assert (int(layers), int(neurons)) == (meta["layers"], meta["neurons"])


def test_cards_prints_as_many_cards_as_it_wrote_and_the_distinct_neurons(tmp_path, tiny_tokenizer):
    """anger and disgust share their one selected neuron: two cards, one distinct neuron."""
    import torch
    from safetensors.torch import save_file

    from helpers.synthetic_inputs import synthetic_split
    from helpers.tiny_models import build_tiny_llama

    model = build_tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    synthetic_split(2).write_parquet(tmp_path / "train.parquet")
    layers, per_layer = model.config.num_hidden_layers, model.config.intermediate_size
    f = torch.randint(1, 101, (layers, per_layer, 6), generator=torch.Generator().manual_seed(0))
    (tmp_path / "counts").mkdir()
    save_file({"f": f, "T": torch.full((6,), 100, dtype=torch.int64)}, tmp_path / "counts" / "counts.safetensors")
    chosen = {e: [[i % layers, 3 * i], [i % layers, 3 * i + 1]] for i, e in enumerate(EMOTIONS)}
    chosen["disgust"] = [[0, 0]]
    chosen["anger"] = [[0, 0]]
    chosen["fear"] = []
    neurons = {"top_rate": 0.1, "assign": "lape", "layers": layers, "neurons_per_layer": per_layer,
               "ratios": {"0.1": {"selected": 7, "neurons": chosen}}}
    (tmp_path / "neurons.json").write_text(json.dumps(neurons))
    (tmp_path / "params.yaml").write_text(params_yaml({
        "model": {"id": str(tmp_path / "model"), "batch_size": 6}, "select": {"top_rate": 0.1}, "eval": {"ratios": [0.1]},
        "cards": {"top_neurons": 2, "contexts": 2, "window": 4, "top_tokens": 2, "min_token_count": 1}}))
    result = run_stage_script("cards", "--params", "params.yaml", "--train", "train.parquet", "--counts", "counts",
                              "--neurons", "neurons.json", "--out", "cards", cwd=tmp_path, merged=True)
    assert result.returncode == 0, result.stdout
    record = json.loads((tmp_path / "cards" / "cards.json").read_text())
    printed = [line for line in log_lines(result.stdout) if "distinct neurons" in line]
    assert len(printed) == 1 and printed[0].startswith("cards: "), result.stdout  # not glued to the bar
    found = re.fullmatch(r"cards: (\d+) cards \((.*)\) of (\d+) distinct neurons over (\d+) train dialogues; wrote .*", printed[0])
    assert found, printed[0]
    cards = [card for entry in record["emotions"].values() for card in entry["cards"]]
    assert int(found[1]) == len(cards) == 8  # anger 1, disgust 1, fear 0, three emotions 2 each
    assert found[2] == ", ".join(f"{e} {len(record['emotions'][e]['cards'])}" for e in EMOTIONS)
    assert int(found[3]) == len({(card["layer"], card["index"]) for card in cards}) == 7
    assert int(found[4]) == record["dialogues"] == 12


def test_select_prints_the_distinct_neurons_and_each_emotions_as_neurons_json_has_them(tmp_path, capsys):
    """Counts where anger and disgust share their neurons: the per-emotion counts add up to more
    than the distinct neurons, and the line says which is which."""
    import torch
    from safetensors.torch import save_file

    from helpers.stage_runner import stage_main

    f = torch.full((2, 50, 6), 30)
    f[:, :10, :2] = 90  # anger's and disgust's: the same ten neurons per layer fire for both
    (tmp_path / "counts").mkdir()
    save_file({"f": f, "T": torch.full((6,), 100, dtype=torch.int64)}, tmp_path / "counts" / "counts.safetensors")
    (tmp_path / "params.yaml").write_text(params_yaml({"select": {"top_rate": 0.1, "filter_rate": 0.5, "activation_bar_ratio": 0.5},
                                                          "eval": {"ratios": [0.1, 0.2]}}))
    stage_main("select_neurons")(params=tmp_path / "params.yaml", counts=tmp_path / "counts", out=tmp_path / "neurons",
                                 metrics=tmp_path / "neurons-metrics.json")
    record = json.loads((tmp_path / "neurons" / "neurons.json").read_text())["ratios"]["0.1"]
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    found = re.fullmatch(r"select: (\d+) distinct neurons at top_rate 0.1 \(per emotion: (.*)\); ratios 0.1, 0.2", printed)
    assert found, printed
    distinct = {tuple(pair) for pairs in record["neurons"].values() for pair in pairs}
    assert int(found[1]) == record["selected"] == len(distinct)
    assert found[2] == ", ".join(f"{e} {len(record['neurons'][e])}" for e in EMOTIONS)
    assert sum(len(v) for v in record["neurons"].values()) > len(distinct)  # shared neurons: the case the wording is for
