"""`make run`'s pull and `emoneurons sweep` in a real git + DVC repo whose two stages are one
line of Python each (the pipeline's own DVC behaviour is in test_pipeline_dvc.py): a fresh clone's
first pull says one line where DVC warned once per output, a refusing remote still shows DVC's
error, and a sweep finishes every queued experiment even from a queue left with tasks Queued and
no worker (treeverse/dvc#10562), restarting the worker when it stops, and exits 1 with the
failed experiment's `dvc queue logs`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from emoneurons.runtime.dvc_runs import parse_queue_status, split_pull_warnings
from helpers.stage_runner import REPO, run_command

pytestmark = pytest.mark.slow

# rate < 0 fails the first stage with a line of its own (the sweep's failing experiment); any rate
# but 1 and 2 waits for the file $SWEEP_GATE (the test holds an experiment Running with it).
DVC_YAML = """stages:
  first:
    cmd: python -c "import os, sys, time, yaml; r = yaml.safe_load(open('params.yaml'))['rate']; r >= 0 or sys.exit('rate must be >= 0, got %s' % r); [time.sleep(0.2) for _ in range(1500) if r > 2 and not os.path.exists(os.environ['SWEEP_GATE'])]; open('a.txt', 'w').write(str(r))"
    params: [rate]
    outs: [a.txt]
  second:
    cmd: python -c "import json; a = open('a.txt').read(); open('b.txt', 'w').write(a * 2); json.dump(dict(x=float(a)), open('m.json', 'w'))"
    deps: [a.txt]
    outs: [b.txt]
    metrics: [{m.json: {cache: false}}]
"""


run = partial(run_command, timeout=300)  # each git/dvc/make call here is seconds; a hang fails in 5 min


@pytest.fixture
def env(tmp_path) -> dict:
    env = dict(os.environ)
    # DVC's queue worker is spawned as `dvc` from PATH: this environment's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="test",
               GIT_COMMITTER_EMAIL="t@example.com", DVC_NO_ANALYTICS="1")
    return env


@pytest.fixture
def project(tmp_path, env) -> Path:
    """A committed git + DVC repo with the two cheap stages, the repo's Makefile and an empty local remote."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "dvc.yaml").write_text(DVC_YAML)
    (work / "params.yaml").write_text("rate: 1\n")
    shutil.copy2(REPO / "Makefile", work / "Makefile")
    run(["git", "init", "-q", "-b", "main"], work, env)
    run([sys.executable, "-m", "dvc", "init", "-q"], work, env)
    run([sys.executable, "-m", "dvc", "remote", "add", "-d", "--local", "store", str(tmp_path / "remote")], work, env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "init"], work, env)
    return work


def make_pipeline(project: Path, env: dict) -> subprocess.CompletedProcess:
    return run(["make", "--no-print-directory", "pipeline"], project, env, check=False)


def test_first_pull_from_an_empty_remote_is_one_line(project, env):
    # What DVC itself says on a fresh clone's first pull: a warning per cached output.
    plain = run([sys.executable, "-m", "dvc", "pull", "--allow-missing", "--run-cache"], project, env)
    missing, kept = split_pull_warnings(plain.stderr)
    assert sorted(Path(p).name for p in missing) == ["a.txt", "b.txt"] and kept == [], plain.stderr
    made = make_pipeline(project, env)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "No file hash info" not in made.stdout + made.stderr
    said = [line for line in made.stdout.splitlines() if line.startswith("dvc pull:")]
    assert said == ["dvc pull: nothing to pull yet for 2 outputs (not in dvc.lock: never run in this clone); dvc repro computes them"]
    assert made.stdout.index(said[0]) < made.stdout.index("Running stage 'first'")
    assert made.stderr.strip() == ""  # nothing else was said on stderr, so nothing was hidden there
    missing, kept = split_pull_warnings("WARNING: No file hash info found for '/w/a.txt'. It won't be created.\n\n"
                                        "WARNING: No file hash info found for '/w/b.txt'. It won't be created.\nERROR: boom\n")
    assert missing == ["/w/a.txt", "/w/b.txt"] and kept == ["ERROR: boom"]


def test_a_refusing_remote_still_shows_dvcs_error(project, env, tmp_path):
    assert make_pipeline(project, env).returncode == 0
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "first run"], project, env)
    # A clone that has dvc.lock but not the data, and a remote DVC cannot read (a file, not a folder).
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path, env)
    (tmp_path / "not-a-folder").write_text("x")
    run([sys.executable, "-m", "dvc", "remote", "add", "-d", "--local", "store", str(tmp_path / "not-a-folder")], clone, env)
    made = make_pipeline(clone, env)
    # dvc pull's own error, before the line that says the pull failed (dvc push fails the same way after it).
    fallback = "make run: could not pull from the default DVC remote (dvc's error above); computing locally"
    assert fallback in made.stderr, made.stderr
    assert "ERROR: unexpected error - [Errno 20] Not a directory" in made.stderr.split(fallback)[0], made.stderr
    assert "dvc pull: nothing to pull yet" not in made.stdout
    assert (clone / "b.txt").read_text() == "11"  # computed locally
    assert made.returncode != 0 and "dvc push to the default remote failed" in made.stderr


def queue_status(project: Path, env: dict):
    return parse_queue_status(run([sys.executable, "-m", "dvc", "queue", "status"], project, env).stdout)


def test_sweep_finishes_a_stalled_queue_restarts_a_stopped_worker_and_reports_the_failure(project, env, tmp_path):
    assert make_pipeline(project, env).returncode == 0
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "first run"], project, env)
    # The stalls DVC can leave: an experiment Queued and no worker to run it, and one a stopping
    # worker took (its message moved from the broker's in/ to processed/, as kombu does on taking a
    # task) and never ran, which DVC shows Running with no worker.
    queued = run([sys.executable, "-m", "dvc", "exp", "run", "--queue", "-S", "rate=2,0"], project, env)
    assert queued.stdout.count("Queued experiment") + queued.stderr.count("Queued experiment") == 2
    broker = project / ".dvc" / "tmp" / "exps" / "celery" / "broker"
    last = sorted((broker / "in").glob("*.celery.msg"))[-1]
    os.replace(last, broker / "processed" / last.name)
    status = queue_status(project, env)
    assert sorted(status.tasks.values()) == ["Queued", "Running"] and (status.active, status.idle) == (0, 0), status
    taken = next(name for name, state in status.tasks.items() if state == "Running")

    gate = tmp_path / "gate"
    env = {**env, "SWEEP_GATE": str(gate)}
    sweep = subprocess.Popen([sys.executable, "-m", "emoneurons.cli", "sweep", "-S", "rate=3,-1", "-j", "1", "--timeout", "600"],
                             cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The stalled one done and the next held Running at the gate: stop the worker (as DVC's
        # own worker sometimes stops), then open the gate. The worker ends after the running
        # experiment and leaves the last one Queued: the sweep must start a worker again.
        deadline = time.monotonic() + 300
        while sorted((status := queue_status(project, env)).tasks.values()) != ["Queued", "Running", "Success", "Success"]:
            assert sweep.poll() is None and time.monotonic() < deadline, status
            time.sleep(2)
        run([sys.executable, "-m", "dvc", "queue", "stop"], project, env)
        gate.write_text("go")
        out, err = sweep.communicate(timeout=700)
    finally:
        if sweep.poll() is None:
            sweep.kill()
        gate.write_text("go")
        run([sys.executable, "-m", "dvc", "queue", "stop", "--kill"], project, env, check=False)
    assert sweep.returncode == 1, out + err
    names = re.search(r"sweep: 4 experiments: (.+)", out)[1].split(", ")
    finals = dict(re.findall(r"^sweep: (\S+) (Success|Failed)$", out, flags=re.M))
    assert list(finals) == names and list(finals.values()) == ["Success", "Success", "Success", "Failed"], out + err
    assert f"sweep: {taken} taken by a queue worker that stopped before finishing it: queued again" in out, out
    assert "sweep: 1 still Queued with no queue worker: starting the workers again" in out, out
    assert f"--- dvc queue logs {names[-1]} ---" in err and "rate must be >= 0, got -1" in err, err
    assert f"sweep: 1 of 4 experiments did not succeed: {names[-1]}" in err
    shown = run([sys.executable, "-m", "dvc", "exp", "show", "--csv"], project, env).stdout
    rows = {line.split(",")[0]: line for line in shown.splitlines()}
    assert set(names[:3]) <= set(rows), shown


def test_queue_status_parse():
    text = ("Task     Name        Created    Status\nc096e25  salic-coth  10:17 AM   Running\n"
            "21f4737  cronk-doss  10:17 AM   Queued\n\nWorker status: 1 active, 0 idle\n")
    status = parse_queue_status(text)
    assert status.tasks == {"salic-coth": "Running", "cronk-doss": "Queued"} and (status.active, status.idle) == (1, 0)
