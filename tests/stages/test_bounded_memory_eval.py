"""Memory that does not grow with the data (docs/SCALE.md), for mask-eval and cards: each run as
the pipeline runs it, a process of its own, on N and on 4N synthetic dialogues; the child's peak
resident set size (its getrusage, from os.wait4) grows by far less than what holding the whole
split would add.

The runs are miniatures of EmoPrism's volume: the size of what a stage holds at once (mask-eval's
chunk of test dialogues, the cards' piece of the train split) is set small, as a stage module's
constant, so that N and 4N both span several of them, as 14k test dialogues and 273k train
dialogues do at the defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from emoneurons.emotions import EMOTIONS
from helpers.repo_params import params_yaml
from helpers.stage_runner import stage_script
from helpers.synthetic_inputs import write_synthetic_counts
from helpers.tiny_models import build_tiny_llama, build_tokenizer

LAYERS, HIDDEN, FFN = 8, 32, 32


def peak_rss_mib(stage: str, cwd: Path, *args: object, constants: dict[str, object]) -> float:
    """stages/<stage>.py run in `cwd` with module constants set first (`module.NAME`: value); the
    process's peak RSS in MiB (it must succeed)."""
    setup = "".join(f"import {name.rpartition('.')[0]}; {name} = {value!r}; " for name, value in constants.items())
    code = (f"import sys, runpy; {setup}sys.argv = [{str(stage_script(stage))!r}, *sys.argv[1:]]; "
            f"runpy.run_path(sys.argv[0], run_name='__main__')")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}
    child = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.stdout.close()
    assert os.waitstatus_to_exitcode(status) == 0, output[-3000:]
    return usage.ru_maxrss / 1024


def _model(folder: Path) -> Path:
    """A random Llama of many thin layers (cheap tokens, many boundary states) and the tiny tokenizer, saved."""
    tokenizer = build_tokenizer()
    model = build_tiny_llama(len(tokenizer), layers=LAYERS, hidden=HIDDEN, intermediate=FFN)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _split(rows: int, repeats: int, offset: int = 0) -> pl.DataFrame:
    labels = [EMOTIONS[i % 6] for i in range(rows)]
    return pl.DataFrame({"id": [f"d{offset + i}" for i in range(rows)], "label": labels, "theme": labels,
                         "dialogue": [f"A: Talk {offset + i}: the bus was late{' and then more of it' * repeats}.\nB: Oh, I see."
                                      for i in range(rows)]})


def _mask_eval_project(root: Path, model: Path, test: int) -> Path:
    (root / "split").mkdir(parents=True)
    _split(60, 1).write_parquet(root / "split/train.parquet")
    _split(test, 2, offset=1000).write_parquet(root / "split/test.parquet")
    # Emotion i's neurons in layer 2 + i: six boundary layers whose states the unmodified run keeps.
    neurons = {e: [[2 + i, j] for j in range(3)] for i, e in enumerate(EMOTIONS)}
    (root / "neurons.json").write_text(json.dumps({"top_rate": 0.01, "assign": "lape", "layers": LAYERS, "neurons_per_layer": FFN,
                                                   "ratios": {"0.01": {"selected": 18, "neurons": neurons}}}))
    (root / "params.yaml").write_text(params_yaml({
        "model": {"id": str(model), "batch_size": 64},
        "select": {"top_rate": 0.01},
        "eval": {"ratios": [0.01], "layer_ranges": ["all"], "control_draws": 0, "controls": ["uniform"], "null_draws": 0,
                 "scales": [], "shots": 0, "calibrate": "none", "bootstrap": 100}}))
    return root


def test_mask_eval_memory_does_not_grow_with_the_test_dialogues(tmp_path):
    """Held whole, 4N test dialogues' boundary states (6 layers x 32 x 4 bytes a token) and ids add
    ~35 MiB over N's; a chunk at a time (2 MiB chunks here) the peak barely moves."""
    model = _model(tmp_path / "model")
    n = 400
    peaks = []
    for test in (n, 4 * n):
        project = _mask_eval_project(tmp_path / f"test{test}", model, test)
        peaks.append(peak_rss_mib("mask_eval", project, "--split", "split", "--neurons", "neurons.json", "--out", "metrics",
                                  "--checkpoints", "ck", constants={"emoneurons.evaluate.chunking.CHUNK_BYTES": 2 * 2**20}))
    evaluation = json.loads((tmp_path / f"test{4 * n}/metrics/eval.json").read_text())
    assert evaluation["n_test"] == 4 * n and len(evaluation["conditions"]) == 7
    tokens = sum(len(ids) for ids in build_tokenizer()(_split(3 * n, 2)["dialogue"].to_list())["input_ids"])
    held = tokens * (6 * HIDDEN * 4 + 44) / 2**20  # the states and the ids of 3N more dialogues
    assert held > 25, held
    assert peaks[1] - peaks[0] < 0.3 * held, (peaks, held)


def _cards_project(root: Path, model: Path, dialogues: int) -> Path:
    (root / "split").mkdir(parents=True)
    _split(dialogues, 400).write_parquet(root / "split/train.parquet")
    write_synthetic_counts(root / "counts", layers=LAYERS, per_layer=FFN)
    neurons = {e: [[i % LAYERS, 2 * i + j] for j in range(4)] for i, e in enumerate(EMOTIONS)}
    (root / "neurons.json").write_text(json.dumps({"top_rate": 0.01, "assign": "lape", "layers": LAYERS, "neurons_per_layer": FFN,
                                                   "ratios": {"0.01": {"selected": 24, "neurons": neurons}}}))
    # max_length 48: the forward is cheap, while tokenizing (all of each dialogue's ~2,800 tokens) is what grew.
    (root / "params.yaml").write_text(params_yaml({"model": {"id": str(model), "batch_size": 64, "max_length": 48},
                                                   "select": {"top_rate": 0.01}}))
    return root


def test_cards_memory_does_not_grow_with_the_train_dialogues(tmp_path):
    """Tokenized whole, 4N long train dialogues' ids (as Python ints, ~36 bytes each, and the
    tokenizer's encodings) add well over 100 MiB over N's; a piece at a time (64 dialogues here)
    the peak barely moves, and the cards keep only their contexts' dialogues."""
    model = _model(tmp_path / "model")
    n = 150
    peaks = []
    for dialogues in (n, 4 * n):
        project = _cards_project(tmp_path / f"train{dialogues}", model, dialogues)
        peaks.append(peak_rss_mib("cards", project, "--train", "split/train.parquet", "--counts", "counts", "--neurons",
                                  "neurons.json", "--out", "cards", constants={"emoneurons.neurons.top_activations.PIECE_DIALOGUES": 64}))
    record = json.loads((tmp_path / f"train{4 * n}/cards/cards.json").read_text())
    assert record["dialogues"] == 4 * n and record["truncated"]["dialogues"] == 4 * n
    tokens = len(build_tokenizer()(_split(1, 400)["dialogue"][0])["input_ids"])
    held = 3 * n * tokens * 36 / 2**20
    assert held > 40, held
    assert peaks[1] - peaks[0] < 0.25 * held, (peaks, held)


def test_mask_eval_cards_and_steer_take_their_threads_from_the_environment(tmp_path):
    """EMONEURONS_THREADS (docs/SCALE.md: one thread a run on a shared machine) sets mask-eval's
    torch threads and so its forked workers, one a thread; a bad value is one line before any work,
    in mask-eval, cards and steer as in count."""
    from helpers.stage_runner import REPO, run_stage_script

    model = _model(tmp_path / "model")
    project = _mask_eval_project(tmp_path / "eval", model, 24)
    line = "EMONEURONS_THREADS: 'lots' (allowed: a whole number >= 1, or unset for torch's own choice)"

    def mask_eval(threads: str):
        return run_stage_script("mask_eval", "--split", "split", "--neurons", "neurons.json", "--out", f"metrics{threads}",
                                "--checkpoints", f"ck{threads}", cwd=project, env={**os.environ, "EMONEURONS_THREADS": threads})

    bad = mask_eval("lots")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [line]
    assert not (project / "metricslots").exists() and not (project / "cklots").exists()
    one = mask_eval("1")  # on 2 or more cores torch's own choice would fork 2 or more workers
    assert one.returncode == 0, one.stderr[-2000:]
    assert "(1 chunk, 1 worker)" in one.stderr, one.stderr[-2000:]

    cards = _cards_project(tmp_path / "cards", model, 12)
    bad = run_stage_script("cards", "--train", "split/train.parquet", "--counts", "counts", "--neurons", "neurons.json",
                           "--out", "out", cwd=cards, env={**os.environ, "EMONEURONS_THREADS": "lots"})
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [line]
    assert not (cards / "out").exists()

    steer = _mask_eval_project(tmp_path / "steer", model, 24)
    bad = run_stage_script("steer", "--params", "params.yaml", "--train", "split/train.parquet", "--neurons", "neurons.json",
                           "--prompts", REPO / "data/steer/prompts.txt", "--out", "out", "--cache", "cache", cwd=steer,
                           env={**os.environ, "EMONEURONS_THREADS": "lots"}, isolated=True)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [line]
    assert not (steer / "out").exists() and not (steer / "cache").exists()
