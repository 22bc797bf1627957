"""mask-eval's peak memory against the size of its test split and of its train split, one at a time
(a benchmark, not a test): the same tiny model, neurons and plan throughout. bench/scale_run.py's
fractions grow both splits at once, and their shots differ too (each train split gives other
shortest dialogues, so another prompt and dialogue budget); here the test split grows with the
train split fixed, and the train split with the test split fixed, and each run's budget is printed.

    .venv/bin/python bench/mask_eval_memory.py                       # 1,000 / 3,000 / 10,000 test dialogues
    .venv/bin/python bench/mask_eval_memory.py --test 1000,3300 --train 82081,273604 --chunk-mib 16

Per (train, test) size it runs stages/mask_eval.py as the pipeline does, in a process of its own, with
evaluate.chunking.CHUNK_BYTES set to `--chunk-mib` (smaller than the default's 256 MiB, so that a few
thousand dialogues already span several chunks, as EmoPrism's 14k test dialogues do at the default),
and prints its wall time, CPU time, chunks and peak RSS (the process's and its forked workers'
largest, from os.wait4), and the peak's growth against the smallest size. The model: bench/scale_run.py's
tiny random Llama (4 layers, hidden 64, FFN 256, SmolLM2's tokenizer); the dialogues its synthetic
EmoPrism-shaped ones; the plan eval.ratios [0.01], eval.layer_ranges [all], eval.controls [uniform]
(13 conditions), three boundary layers kept, as the scale run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import typer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from scale_run import save_tiny_model, synthetic_records  # noqa: E402

from emoneurons.emotions import EMOTIONS  # noqa: E402

LAYERS, FFN = 4, 256


def _table(records: list[dict], prefix: str) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"{prefix}{i}" for i in range(len(records))], "label": [r["theme"] for r in records],
                         "theme": [r["theme"] for r in records], "dialogue": [r["dialogue"] for r in records]})


def _neurons() -> dict:
    """Emotion i's 10 neurons from layer 1 + i % 3 up: the all-layer masks start at layers 1, 2 and 3
    (three boundary layers' states kept), as the scale run's selection did."""
    neurons = {}
    for i, emotion in enumerate(EMOTIONS):
        first = 1 + i % 3
        neurons[emotion] = [[layer, (7 * i + 11 * j) % FFN] for j, layer in enumerate(
            [first + k % (LAYERS - first) for k in range(10)])]
    return {"top_rate": 0.01, "assign": "lape", "layers": LAYERS, "neurons_per_layer": FFN,
            "ratios": {"0.01": {"selected": 60, "neurons": neurons}}}


def _project(root: Path, model: Path, train: pl.DataFrame, test: pl.DataFrame) -> Path:
    import yaml

    from emoneurons.io.tables import BATCH_ROWS, table_writer

    (root / "split").mkdir(parents=True, exist_ok=True)
    for table, name in ((train, "train"), (test, "test")):  # as split writes them: a row group per BATCH_ROWS rows
        with table_writer(root / f"split/{name}.parquet") as write:
            for batch in table.iter_slices(BATCH_ROWS):
                write(batch)
    (root / "neurons.json").write_text(json.dumps(_neurons()))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"]["id"] = str(model)
    params["eval"].update(ratios=[0.01], layer_ranges=["all"], controls=["uniform"], null_draws=0, scales=[])
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def _run(project: Path, chunk_bytes: int) -> dict:
    """stages/mask_eval.py in `project` with CHUNK_BYTES set; its wall, CPU, peak RSS and chunks."""
    code = ("import sys, runpy; import emoneurons.evaluate.chunking as c; "
            f"c.CHUNK_BYTES = {chunk_bytes}; sys.argv = [{str(REPO / 'stages/mask_eval.py')!r}, *sys.argv[1:]]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(REPO / "src")}
    start = time.time()
    with open(project / "mask_eval.log", "w") as log:
        child = subprocess.Popen([sys.executable, "-c", code, "--split", "split", "--neurons", "neurons.json", "--out",
                                  "metrics", "--checkpoints", "ck"], cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"mask-eval failed in {project}: see {project / 'mask_eval.log'}")
    log_text = (project / "mask_eval.log").read_text()
    chunks = log_text.split("mask-eval dialogues x runs (", 1)[1].split(" chunk", 1)[0] if "x runs (" in log_text else "?"
    evaluation = json.loads((project / "metrics/eval.json").read_text())
    return {"wall_s": round(time.time() - start, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "chunks": chunks, "n_test": evaluation["n_test"],
            "tokens_computed": evaluation["tokens"]["computed"], "conditions": len(evaluation["conditions"]),
            "budget": (evaluation.get("truncated") or {}).get("budget")}


def main(
    test: str = typer.Option("1000,3000,10000", help="test dialogues per run, comma-separated"),
    train: str = typer.Option("273604", help="train dialogues per run, comma-separated (every train size with every test "
                              "size); the default is the 100% split's: its shortest shots leave the dialogue its budget"),
    chunk_mib: float = typer.Option(16, help="evaluate.chunking.CHUNK_BYTES for the runs, in MiB"),
    out: Path = typer.Option(Path("/tmp/mask_eval_memory"), help="scratch folder (model, projects, logs)"),
) -> None:
    tests, trains = [int(s) for s in test.split(",")], [int(s) for s in train.split(",")]
    out.mkdir(parents=True, exist_ok=True)
    model = out / "model"
    save_tiny_model(model)
    # The test dialogues first, the same ones at every train size; every train split's shortest
    # dialogues are among the first rows of the largest, so a smaller one may give other shots.
    records = list(synthetic_records(max(tests) + max(trains), seed=1))
    print(f"mask-eval memory: test sizes {tests}, train sizes {trains}, CHUNK_BYTES {chunk_mib} MiB, "
          f"EMONEURONS_THREADS={os.environ.get('EMONEURONS_THREADS', '(unset)')}, load {os.getloadavg()[0]:.2f}, "
          f"commit {_commit()}", flush=True)
    rows = []
    for n_train in trains:
        train_table = _table(records[max(tests):max(tests) + n_train], "train")
        for n_test in tests:
            project = _project(out / f"train{n_train}-test{n_test}", model, train_table, _table(records[:n_test], "test"))
            result = {"train": n_train, "test": n_test, **_run(project, int(chunk_mib * 2**20))}
            rows.append(result)
            print(json.dumps(result), flush=True)
    base = rows[0]["peak_rss_mib"]
    print("| train | test | chunks | wall s | CPU s | tokens computed | dialogue budget | peak RSS MiB | vs the first |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['train']:,} | {r['test']:,} | {r['chunks']} | {r['wall_s']} | {r['cpu_s']} | {r['tokens_computed']:,} | "
              f"{r['budget']} | {r['peak_rss_mib']} | {(r['peak_rss_mib'] / base - 1) * 100:+.1f}% |")


def _commit() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    typer.run(main)
