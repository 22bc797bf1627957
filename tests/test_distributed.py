"""count and mask-eval as `accelerate launch` runs them: 2 processes over gloo, 2 "machines" on
127.0.0.1, and a run killed with SIGKILL then resumed, all on the tiny random Llama saved to a
folder (model.id: <path>). Each must write exactly what one uninterrupted process writes."""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from emoneurons.emotions import EMOTIONS

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # subprocesses and launchers: ~2.5 min of CPU together
BIN = Path(sys.executable).parent
LAUNCH = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
WORDS = ("sun rain dog car home work friend mother city night letter party storm food music exam "
         "smell noise dark loss gift news call door road").split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dialogues(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(f"{'AB'[t % 2]}: " + " ".join(rng.choices(WORDS, k=rng.randint(3, 9))) + "."
                     for t in range(rng.randint(2, 6))) for _ in range(n)]


def stage_main(name: str):
    """A stage script's main(), to run in this process (no interpreter start-up to pay)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def stage(project: Path, env: dict, name: str, *extra: str, launch: list[str] | None = None,
          check: bool = True) -> subprocess.CompletedProcess:
    args = [*(launch or [sys.executable]), str(REPO / "stages" / f"{name}.py"), "--params", str(project / "params.yaml"),
            *stage_paths(project, name), *extra]
    result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}")
    return result


def stage_paths(project: Path, name: str, out: str = "") -> list[str]:
    if name == "count":
        return ["--train", str(project / "split/train.parquet"), "--checkpoints", str(project / "ckpt")]
    return ["--split", str(project / "split"), "--neurons", str(project / "neurons/neurons.json"),
            "--checkpoints", str(project / "ckpt")]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               HF_HOME=str(tmp_path_factory.mktemp("hf")), EMONEURONS_CACHE=str(tmp_path_factory.mktemp("cache")),
               PATH=f"{BIN}{os.pathsep}{env['PATH']}")
    env.pop(
        "EMONEURONS_LAUNCH", None)
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory, env, tiny_tokenizer) -> Path:
    """Model folder, split, params; and the reference outputs of one uninterrupted process each."""
    import polars as pl
    from conftest import build_tiny_llama

    root = tmp_path_factory.mktemp("dp")
    model = build_tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(root / "model")
    tiny_tokenizer.save_pretrained(root / "model")
    (root / "split").mkdir()
    for name, n, seed in (("train", 300, 1), ("test", 12, 2)):
        texts = dialogues(n, seed)
        pl.DataFrame({"dialogue": texts, "theme": [EMOTIONS[i % 6] for i in range(n)],
                      "label": [EMOTIONS[i % 6] for i in range(n)]}).write_parquet(root / "split" / f"{name}.parquet")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(id=str(root / "model"), batch_size=2)
    params["count"]["checkpoint_every"] = 1
    params["eval"].update(ratios=[0.01, 0.05], layer_ranges=["top", "all"], control_draws=1, bootstrap=50,
                          calibration_per_emotion=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    # The references in this process (the killed runs below are subprocesses of the same stages).
    ckpt = root / "ckpt"
    stage_main("count")(params=root / "params.yaml", train=root / "split/train.parquet", out=root / "ref/counts",
                        checkpoints=ckpt)
    assert not list(ckpt.glob("count-*")), "checkpoints are removed after success"
    stage_main("select_neurons")(params=root / "params.yaml", counts=root / "ref/counts", out=root / "neurons",
                                 metrics=root / "neurons-metrics.json")
    stage_main("mask_eval")(params=root / "params.yaml", split=root / "split", neurons=root / "neurons/neurons.json",
                            out=root / "ref/metrics", checkpoints=ckpt)
    return root


def same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_two_processes_write_what_one_writes(project, env):
    for name, out in (("count", "dp2/counts"), ("mask_eval", "dp2/metrics")):
        launch = [*LAUNCH, "--num_machines", "1", "--num_processes", "2", "--main_process_port", str(free_port())]
        result = stage(project, env, name, "--out", str(project / out), launch=launch)
        assert result.stdout.count(f"{name.replace('_', '-')}: ") == 1, result.stdout  # rank 0 alone reports
        same_files(project / ("ref/counts" if name == "count" else "ref/metrics"), project / out)
    assert not list((project / "ckpt").iterdir())


def test_launch_variable_reruns_the_stage_under_the_launcher(monkeypatch):
    """EMONEURONS_LAUNCH (what `dvc repro` passes through) replaces the plain process by the launcher."""
    from emoneurons import distributed

    calls = []
    monkeypatch.setattr(distributed.os, "execvp", lambda program, args: calls.append(args))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("EMONEURONS_LAUNCH", "accelerate launch --multi_gpu --num_processes 8")
    distributed.relaunch_if_requested("stages/count.py", ["--params", "p.yaml"])
    assert calls == [["accelerate", "launch", "--multi_gpu", "--num_processes", "8", "stages/count.py", "--params", "p.yaml"]]
    monkeypatch.setenv("LOCAL_RANK", "0")  # already one of the launcher's processes: no second launch
    distributed.relaunch_if_requested("stages/count.py", [])
    assert len(calls) == 1


def test_shards_cover_every_item_once_and_leave_extra_ranks_idle():
    from emoneurons.distributed import shard

    for n, world in ((10, 3), (2, 5), (0, 2)):
        parts = [shard(n, rank, world) for rank in range(world)]
        assert sorted(i for part in parts for i in part) == list(range(n))
    assert shard(2, 4, 5) == []


def test_two_machines_on_localhost_with_an_idle_rank(project, env):
    """Two process groups with the environment a launcher gives each node (MASTER_ADDR 127.0.0.1,
    RANK 0 and 1 of WORLD_SIZE 2, LOCAL_RANK 0 on each node) meet over TCP; one batch only:
    rank 1 is idle. (README shows the same with two `accelerate launch --machine_rank` lines.)"""
    from emoneurons.neurons.counting import activation_counts
    from emoneurons.model.loading import load_model
    from emoneurons.params import load_params
    from emoneurons.data.io import read_table
    from safetensors.torch import load_file

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model"]["batch_size"] = 4096  # every dialogue in one batch
    (project / "nodes").mkdir()
    (project / "nodes/params.yaml").write_text(yaml.safe_dump(params))
    port = str(free_port())
    machines = []
    for machine in (0, 1):
        node_env = env | dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE="2", RANK=str(machine),
                              LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", GROUP_RANK=str(machine))
        args = [sys.executable, str(REPO / "stages/count.py"), "--params", str(project / "nodes/params.yaml"),
                *stage_paths(project, "count"), "--out", str(project / f"nodes/counts{machine}")]
        machines.append(subprocess.Popen(args, cwd=project, env=node_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [m.communicate(timeout=300) for m in machines]
    for m, (out, err) in zip(machines, outputs):
        assert m.returncode == 0, err[-4000:]
    assert not (project / "nodes/counts1").exists()  # only the global rank 0 writes
    settings = load_params(project / "nodes/params.yaml")
    train = read_table(project / "split/train.parquet")
    f, T = activation_counts(load_model(settings.model), train["dialogue"].to_list(), train["theme"].to_list(),
                             batch_size=4096, max_length=settings.model.max_length)
    written = load_file(project / "nodes/counts0/counts.safetensors")
    assert torch.equal(written["f"], f) and torch.equal(written["T"], T)


def _kill_after_first_checkpoint(project: Path, env: dict, name: str, out: Path, pattern: str) -> None:
    args = [sys.executable, str(REPO / "stages" / f"{name}.py"), "--params", str(project / "params.yaml"),
            *stage_paths(project, name), "--out", str(out)]
    process = subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((project / "ckpt").glob(pattern)):
        assert process.poll() is None, f"{name} ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(random.Random(name).uniform(0, 0.05))  # a random point after the first save
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"{name} finished before the kill"
    assert not out.exists()


@pytest.mark.parametrize("name, pattern, resumed", [
    ("count", "count-*/rank0-of-1.safetensors", "count: rank 0 resumes after "),
    ("mask_eval", "mask-eval-*/condition-*.pt", "mask-eval: rank 0 resumes "),
])
def test_killed_run_resumes_to_the_same_outputs(project, env, name, pattern, resumed):
    out = project / f"killed/{name}"
    _kill_after_first_checkpoint(project, env, name, out, pattern)
    result = stage(project, env, name, "--out", str(out))
    assert resumed in result.stderr
    same_files(project / ("ref/counts" if name == "count" else "ref/metrics"), out)
    assert not list((project / "ckpt").iterdir())
