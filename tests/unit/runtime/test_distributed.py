"""count and mask-eval as `accelerate launch` runs them: 2 processes over gloo, 2 "machines" on
127.0.0.1, and a run killed with SIGKILL then resumed, all on the tiny random Llama saved to a
folder (model.id: <path>). Each must write exactly what one uninterrupted process writes."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from emoneurons.emotions import EMOTIONS
from emoneurons.io.neurons_file import parse_neurons
from helpers.stage_runner import REPO, stage_main

pytestmark = pytest.mark.slow  # subprocesses and launchers: ~3 min of CPU together (8 min wall on 2 busy cores)
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
            "--counts", str(project / "ref/counts"), "--checkpoints", str(project / "ckpt")]


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

    from helpers.tiny_models import build_tiny_llama

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
                          calibration_per_emotion=1, null_draws=2)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    # The references in this process (the killed runs below are subprocesses of the same stages).
    ckpt = root / "ckpt"
    stage_main("count")(params=root / "params.yaml", train=root / "split/train.parquet", out=root / "ref/counts",
                        checkpoints=ckpt)
    assert not list(ckpt.glob("count-*")), "checkpoints are removed after success"
    stage_main("select_neurons")(params=root / "params.yaml", counts=root / "ref/counts", out=root / "neurons",
                                 metrics=root / "neurons-metrics.json")
    stage_main("mask_eval")(params=root / "params.yaml", split=root / "split", neurons=root / "neurons/neurons.json",
                            counts=root / "ref/counts", out=root / "ref/metrics", checkpoints=ckpt)
    return root


def same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def two_processes() -> list[str]:
    return [*LAUNCH, "--num_machines", "1", "--num_processes", "2", "--main_process_port", str(free_port())]


def masked_conditions(project: Path) -> int:
    """How many distinct masked conditions mask-eval runs with the project's params and neurons."""
    from emoneurons.evaluate.conditions import plan_conditions, unique_masks
    from emoneurons.io.tables import read_counts
    from emoneurons.neurons.selection import overall_activation_probability
    from emoneurons.params import load_params

    params = load_params(project / "params.yaml")
    selection = json.loads((project / "neurons/neurons.json").read_text())
    p_active = overall_activation_probability(*read_counts(project / "ref/counts"))
    return len(unique_masks(plan_conditions(parse_neurons(selection), params.eval, params.select.top_rate, int(selection["layers"]), p_active))) - 1


def shard_records(folder: Path, stage_name: str, world: int) -> list[dict]:
    """Each rank's record of what it computed (distributed.record_shard), in rank order."""
    return [json.loads((folder / f"{stage_name}-rank{rank}-of-{world}.json").read_text()) for rank in range(world)]


def assert_split(parts: list[list[int]], n: int, what: str) -> None:
    """Every rank took some, no item twice, every item once."""
    assert all(parts), f"a rank took no {what}: {[len(p) for p in parts]}"
    taken = [i for part in parts for i in part]
    assert len(taken) == len(set(taken)), f"{what} computed by more than one rank"
    assert sorted(taken) == list(range(n)), f"{what} not covered: {len(set(taken))} of {n}"


def test_two_processes_split_the_work_and_write_what_one_writes(project, env, tmp_path):
    """Each of the 2 ranks records what it computed itself: count's dialogues and mask-eval's
    masked conditions are split between them (each took some, none twice, all covered), rank 0
    alone reports, and the files equal one process's byte for byte."""
    records = tmp_path / "shards"
    sharded = {**env, "EMONEURONS_SHARD_RECORD": str(records)}
    for name, out in (("count", "dp2/counts"), ("mask_eval", "dp2/metrics")):
        result = stage(project, sharded, name, "--out", str(project / out), launch=two_processes())
        assert result.stdout.count(f"{name.replace('_', '-')}: ") == 1, result.stdout  # rank 0 alone reports
        same_files(project / ("ref/counts" if name == "count" else "ref/metrics"), project / out)
    count = shard_records(records, "count", 2)
    assert_split([r["counted_dialogues"] for r in count], 300, "train dialogues")
    assert [r["resumed_batches"] for r in count] == [0, 0]
    mask_eval = shard_records(records, "mask-eval", 2)
    assert_split([r["ran_conditions"] for r in mask_eval], masked_conditions(project), "masked conditions")
    assert sorted(p.name for p in records.iterdir()) == ["count-rank0-of-2.json", "count-rank1-of-2.json",
                                                         "mask-eval-rank0-of-2.json", "mask-eval-rank1-of-2.json"]
    assert not list((project / "ckpt").iterdir())


def test_launch_variable_reruns_the_stage_under_the_launcher(monkeypatch):
    """EMONEURONS_LAUNCH (what `dvc repro` passes through) replaces the plain process by the launcher."""
    from emoneurons.runtime import distributed

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
    from emoneurons.runtime.distributed import shard

    for n, world in ((10, 3), (2, 5), (0, 2)):
        parts = [shard(n, rank, world) for rank in range(world)]
        assert sorted(i for part in parts for i in part) == list(range(n))
    assert shard(2, 4, 5) == []


def machine_launch(machine_rank: str, main_ip: str, port: str) -> list[str]:
    """The launcher of one of two "machines", one process each (docs/DISTRIBUTED.md shows this line)."""
    return [*LAUNCH, "--num_machines", "2", "--num_processes", "2", "--machine_rank", machine_rank,
            "--main_process_ip", main_ip, "--main_process_port", port]


def two_machines(project: Path, env: dict, name: str, params: Path, outs: tuple[Path, Path]) -> list[str]:
    """Run stage `name` as two `accelerate launch --num_machines 2` started at once on 127.0.0.1,
    each with its own --out (only the global rank 0 may write); their stdouts."""
    port = str(free_port())
    machines = []
    try:
        for machine, out in zip(("0", "1"), outs):
            args = [*machine_launch(machine, "127.0.0.1", port), str(REPO / "stages" / f"{name}.py"),
                    "--params", str(params), *stage_paths(project, name), "--out", str(out)]
            machines.append(subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True))
        results = [m.communicate(timeout=300) for m in machines]
    finally:
        for m in machines:  # one that failed leaves the other waiting for it: end both
            if m.poll() is None:
                m.kill()
                m.wait()
    for machine, m, (_, err) in zip("01", machines, results):
        assert m.returncode == 0, f"{name} on machine {machine} failed ({m.returncode}):\n{err[-4000:]}"
    return [stdout for stdout, _ in results]


def test_two_machines_on_localhost_write_what_one_process_writes(project, env):
    """Two "machines" as two `accelerate launch --num_machines 2 --machine_rank 0|1
    --main_process_ip 127.0.0.1` process groups meeting over TCP (gloo), one process each.
    count with every dialogue in one batch (machine 1's rank is idle), then mask-eval with the
    project's params: each writes exactly what one process writes, from global rank 0 only."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model"]["batch_size"] = 4096  # one batch for two ranks: rank 1 has none
    nodes = project / "nodes"
    nodes.mkdir()
    (nodes / "params.yaml").write_text(yaml.safe_dump(params))
    stage_main("count")(params=nodes / "params.yaml", train=project / "split/train.parquet", out=nodes / "ref-counts",
                        checkpoints=project / "ckpt")
    for name, params_file, reference in (("count", nodes / "params.yaml", nodes / "ref-counts"),
                                         ("mask_eval", project / "params.yaml", project / "ref/metrics")):
        outs = (nodes / f"{name}-machine0", nodes / f"{name}-machine1")
        stdouts = two_machines(project, env, name, params_file, outs)
        report = f"{name.replace('_', '-')}: "
        assert stdouts[0].count(report) == 1 and report not in stdouts[1], stdouts
        assert not outs[1].exists()  # only the global rank 0 writes
        same_files(reference, outs[0])
    assert not list((project / "ckpt").iterdir())


def test_documented_multi_node_line_is_the_tested_one():
    """docs/DISTRIBUTED.md's two-machine line is the launcher that test_two_machines_on_localhost_write_what_one_process_writes runs."""
    text = (REPO / "docs/DISTRIBUTED.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("accelerate launch") and "--num_machines" in line]
    assert lines, "no multi-node launch line in docs/DISTRIBUTED.md"
    tested = ["accelerate", *machine_launch("$MACHINE_RANK", "$MAIN_IP", "$PORT")[1:]]
    for line in lines:
        assert line.split()[:-1] == tested, line
        assert line.split()[-1] in ("stages/count.py", "stages/mask_eval.py")


def test_slurm_example_is_valid_bash_with_the_tested_launcher_options():
    """docs/slurm-count.sbatch parses as bash, and its launcher takes the options of the tested
    two-machine launcher (values from Slurm), one launcher per node."""
    sbatch = REPO / "docs/slurm-count.sbatch"
    subprocess.run(["bash", "-n", str(sbatch)], check=True)
    text = sbatch.read_text()
    assert "#SBATCH --ntasks-per-node=1" in text
    launch = text[text.index("accelerate launch"):text.index("stages/$STAGE.py")].replace("\\\n", " ")
    options = {word for word in launch.split() if word.startswith("--")}
    assert options == {word for word in machine_launch("0", "ip", "1") if word.startswith("--")}


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process and every process under it. A launcher's ranks run in sessions of their
    own (torch.distributed.elastic starts them so): a kill of the launcher's group alone leaves them
    running to the end, and they would finish the work and remove its checkpoints."""
    import psutil

    root = psutil.Process(process.pid)
    tree = [root, *root.children(recursive=True)]
    for member in tree:
        member.send_signal(signal.SIGSTOP)  # frozen first: none of them saves or writes after the others died
    for member in tree:
        member.kill()
    psutil.wait_procs(tree[1:], timeout=60)


def _kill_after_first_checkpoint(project: Path, env: dict, name: str, out: Path, pattern: str,
                                 launch: list[str] | None = None) -> int:
    """SIGKILL the stage (a launcher: with its ranks) at a random point after its first checkpoint;
    what its checkpoints hold then: count's batches done by rank 0, or mask-eval's finished conditions."""
    args = [*(launch or [sys.executable]), str(REPO / "stages" / f"{name}.py"), "--params", str(project / "params.yaml"),
            *stage_paths(project, name), "--out", str(out)]
    process = subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((project / "ckpt").glob(pattern)):
        assert process.poll() is None, f"{name} ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(random.Random(name).uniform(0, 0.05))  # a random point after the first save
    kill_tree(process)
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"{name} finished before the kill"
    assert not out.exists()
    saved = sorted((project / "ckpt").glob(pattern))
    if name == "count":
        from safetensors import safe_open

        with safe_open(str(saved[0]), framework="pt") as handle:
            return json.loads(handle.metadata()["meta"])["done"]
    return len(saved)


@pytest.mark.parametrize("name, pattern, resumed", [
    ("count", "count-*/rank0-of-1.safetensors", r"count: rank 0 resumes after (\d+) of its"),
    ("mask_eval", "mask-eval-*/condition-*.pt", r"mask-eval: rank 0 resumes (\d+) finished conditions"),
])
def test_killed_run_resumes_to_the_same_outputs(project, env, name, pattern, resumed):
    """The rerun starts from everything saved before the kill (count.checkpoint_every is 1 here:
    at most the batch in flight is redone; mask-eval: at most the condition in flight)."""
    out = project / f"killed/{name}"
    saved = _kill_after_first_checkpoint(project, env, name, out, pattern)
    result = stage(project, env, name, "--out", str(out))
    assert [int(n) for n in re.findall(resumed, result.stderr)] == [saved], result.stderr[-2000:]
    same_files(project / ("ref/counts" if name == "count" else "ref/metrics"), out)
    assert not list((project / "ckpt").iterdir())


@pytest.mark.parametrize("name, first, then", [("mask_eval", 2, 1), ("mask_eval", 1, 2), ("count", 2, 1), ("count", 1, 2)])
def test_killed_run_resumes_with_another_number_of_processes(project, env, name, first, then):
    """A run of `first` processes killed after its first checkpoint, rerun with `then`: mask-eval
    resumes every finished condition whatever the number (a condition's result does not depend
    on the rank that ran it); count's partial sums are over another split of the batches, so it
    says so in one line and counts afresh. Both write what one uninterrupted process writes."""
    out = project / f"killed-{first}-then-{then}/{name}"
    launch = {1: None, 2: two_processes()}
    if name == "mask_eval":
        saved = _kill_after_first_checkpoint(project, env, name, out, "mask-eval-*/condition-*.pt", launch[first])
        result = stage(project, env, name, "--out", str(out), launch=launch[then])
        resumed = [int(n) for n in re.findall(r"mask-eval: rank \d+ resumes (\d+) finished conditions", result.stderr)]
        assert saved >= 1 and sum(resumed) == saved, (saved, resumed, result.stderr[-2000:])
    else:
        _kill_after_first_checkpoint(project, env, name, out, f"count-*/rank0-of-{first}.safetensors", launch[first])
        result = stage(project, env, name, "--out", str(out), launch=launch[then])
        assert "holds the counts of another number of processes" in result.stderr, result.stderr[-2000:]
        assert "resumes after" not in result.stderr
    same_files(project / ("ref/counts" if name == "count" else "ref/metrics"), out)
    assert not list((project / "ckpt").iterdir())
