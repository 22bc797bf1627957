"""DVC commands as a user runs them, made to say what happens and to finish: `make run`'s pull
(a fresh clone's warning per never-computed output folded into one line, every other line of DVC
kept) and a queued sweep that restarts DVC's queue worker while tasks wait (treeverse/dvc#10562:
`dvc queue start` can leave tasks Queued with no worker), reporting failures with their logs."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from emoneurons.errors import EmoneuronsError

# DVC's warning for an output that dvc.lock has no hash for: nothing to pull, the stage never ran here.
_NO_HASH = re.compile(r"^WARNING: No file hash info found for '(?P<path>.+)'\. It won't be created\.$")
_QUEUED = re.compile(r"Queued experiment '(?P<name>[^']+)' for future execution")
_TASK = re.compile(r"^(?P<task>[0-9a-f]{7})\s+(?P<name>\S+)\s.*\s(?P<status>Queued|Running|Success|Failed)\s*$")
_WORKERS = re.compile(r"^Worker status: (?P<active>\d+) active, (?P<idle>\d+) idle")
WAITING = ("Queued", "Running")


# DVC's local queue (dvc.repo.experiments.queue.celery at the locked dvc / dvc-task versions): each
# worker's process record, and the kombu filesystem broker whose worker moves a task's message from
# in/ to processed/ when it takes the task.
_CELERY_DIR = Path(".dvc", "tmp", "exps", "celery")


def this_environment_first() -> dict[str, str]:
    """The environment with this Python's bin folder first on PATH: DVC's queue worker starts `dvc`
    and the stages' `python` by name, so without it a sweep run outside an activated venv fails
    every experiment (FileNotFoundError: 'dvc', in the worker's celery result)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), *filter(None, [env.get("PATH")])])
    return env


def dvc_command(args: Sequence[str], repo: Path, timeout: float | None = 300, *, detached: bool = False) -> subprocess.CompletedProcess:
    # The dvc of this environment, whatever PATH holds; bounded, so a stuck DVC call ends the sweep.
    # `detached`: the command leaves processes running (`dvc queue start`: its workers are forked
    # and keep its stdout and stderr), so its output goes to files, not pipes: on pipes the call
    # would wait until the workers exit, past any timeout once an experiment runs for minutes.
    command = [sys.executable, "-m", "dvc", *args]
    try:
        if not detached:
            return subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=timeout,
                                  env=this_environment_first())
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            done = subprocess.run(command, cwd=repo, stdout=out, stderr=err, text=True, timeout=timeout,
                                  env=this_environment_first())
            out.seek(0), err.seek(0)
            return subprocess.CompletedProcess(command, done.returncode, out.read(), err.read())
    except subprocess.TimeoutExpired:
        raise SweepError(f"dvc {' '.join(args)} did not answer within {timeout:g} s") from None


def split_pull_warnings(stderr: str) -> tuple[list[str], list[str]]:
    """(paths DVC warned have no hash in dvc.lock, every other stderr line, blank ones dropped)."""
    missing, kept = [], []
    for line in stderr.splitlines():
        match = _NO_HASH.match(line.strip())
        if match:
            missing.append(match["path"])
        elif line.strip():
            kept.append(line)
    return missing, kept


def pull(repo: Path = Path("."), echo: Callable[[str, bool], None] | None = None) -> int:
    """`dvc pull --allow-missing --run-cache`; DVC's exit status. Outputs never computed in this
    clone (no dvc.lock entry: a fresh clone's first run) are one line instead of a warning each;
    DVC's other output, its errors first of all, is passed on as it is."""
    echo = echo or _echo
    result = dvc_command(["pull", "--allow-missing", "--run-cache"], repo, timeout=None)
    missing, kept = split_pull_warnings(result.stderr)
    out = [line for line in result.stdout.splitlines() if line.strip()]
    if missing and out == ["Everything is up to date."]:
        out = []  # said by the line below
    for line in out:
        echo(line, False)
    for line in kept:
        echo(line, True)
    if missing:
        echo(f"dvc pull: nothing to pull yet for {len(missing)} outputs (not in dvc.lock: never run in this clone); "
             "dvc repro computes them", False)
    return result.returncode


@dataclass(frozen=True)
class QueueStatus:
    tasks: dict[str, str]  # experiment name -> Queued / Running / Success / Failed
    active: int
    idle: int


def parse_queue_status(text: str) -> QueueStatus:
    """`dvc queue status`'s table and worker line."""
    tasks, active, idle = {}, 0, 0
    for line in text.splitlines():
        if task := _TASK.match(line):
            tasks[task["name"]] = task["status"]
        elif workers := _WORKERS.match(line):
            active, idle = int(workers["active"]), int(workers["idle"])
    return QueueStatus(tasks, active, idle)


def queued_names(output: str) -> list[str]:
    """The experiment names `dvc exp run --queue` reports queuing, in order."""
    return [m["name"] for m in _QUEUED.finditer(output)]


class SweepError(EmoneuronsError, RuntimeError):
    """A DVC command of the sweep failed, or the sweep ran past its time limit (one line)."""


def queue_experiments(set_params: Sequence[str], repo: Path) -> list[str]:
    """`dvc exp run --queue -S ...` (a comma in a value sweeps it); the names DVC queued, in order."""
    queued = dvc_command(["exp", "run", "--queue", *(a for p in set_params for a in ("-S", p))], repo)
    if queued.returncode != 0:
        raise SweepError(f"dvc exp run --queue failed: {(queued.stderr or queued.stdout).strip()}")
    return queued_names(queued.stdout + queued.stderr)


def sweep(set_params: Sequence[str], jobs: int, repo: Path = Path("."), *, timeout: float = 0, poll: float = 3.0,
          grace: float = 15.0, echo: Callable[[str, bool], None] | None = None) -> dict[str, str]:
    """Queue one experiment per combination of `set_params` (`dvc exp run --queue -S ...`), run
    them and any already waiting in the queue with `jobs` workers until none is Queued or Running,
    and return each one's final status. DVC's worker can stop with tasks still Queued: whenever one of
    ours waits Queued with no worker at all, `grace` seconds after the last start (a worker
    takes a few seconds to register), the workers are started again; one that a stopped worker
    took and left Running is put back in the queue first."""
    echo = echo or _echo
    names = [n for n, s in _status(repo).tasks.items() if s in WAITING]  # a stalled earlier sweep's too
    if set_params:
        names += queue_experiments(set_params, repo)
    if not names:
        raise SweepError("nothing to sweep: no experiment queued (give -S key=v1,v2,...)")
    echo(f"sweep: {len(names)} experiments: {', '.join(names)}", False)
    deadline = time.monotonic() + timeout if timeout else None
    starts, last_start = 0, -float("inf")
    while True:
        status = _status(repo)
        ours = {n: status.tasks.get(n, "missing from dvc queue status") for n in names}
        if not any(s in WAITING for s in ours.values()):
            break
        # Celery's inspect answers within 1 s or counts the worker absent, so a busy worker can look
        # gone: the worker processes' own records decide.
        no_worker = status.active == 0 and status.idle == 0 and not worker_running(repo)
        if no_worker and time.monotonic() - last_start >= grace:
            # A worker that stops (dvc queue stop, or its own idle shutdown) can take the next task's
            # message on its way out and never run it: DVC then shows it Running for ever.
            taken = requeue_taken([n for n, s in ours.items() if s == "Running"], repo)
            if taken:
                echo(f"sweep: {', '.join(taken)} taken by a queue worker that stopped before finishing it: "
                     "queued again", False)
            if taken or "Queued" in ours.values():
                if starts:
                    left = sum(s == "Queued" for s in ours.values()) + len(taken)
                    echo(f"sweep: {left} still Queued with no queue worker: starting the workers again", False)
                started = dvc_command(["queue", "start", "-j", str(jobs)], repo, detached=True)
                if started.returncode != 0:
                    raise SweepError(f"dvc queue start failed: {(started.stderr or started.stdout).strip()}")
                starts, last_start = starts + 1, time.monotonic()
        if deadline is not None and time.monotonic() > deadline:
            raise SweepError(f"sweep: still waiting after {timeout:g} s: " + ", ".join(f"{n} {s}" for n, s in ours.items()))
        time.sleep(poll)
    for name, state in ours.items():
        echo(f"sweep: {name} {state}", False)
        if state == "Failed":
            logs = dvc_command(["queue", "logs", name], repo)
            echo(f"--- dvc queue logs {name} ---", True)
            echo((logs.stdout + logs.stderr).rstrip(), True)
    return ours


def worker_running(repo: Path) -> bool:
    """Whether a queue worker process of this repository is alive (DVC's record of each worker it spawned)."""
    for record in (repo / _CELERY_DIR).glob("dvc-exp-worker-*.json"):
        try:
            info = json.loads(record.read_text())
            if info.get("returncode") is None:
                os.kill(int(info["pid"]), 0)
                return True
        except (OSError, ValueError, KeyError, TypeError):
            continue  # half-written, or the process is gone
    return False


def requeue_taken(names: Sequence[str], repo: Path) -> list[str]:
    """Put back in the queue the tasks of `names` that a worker took (message in processed/) and
    that have no result: call only when no worker is alive. Returns the names put back."""
    broker, results = repo / _CELERY_DIR / "broker", repo / _CELERY_DIR / "result"
    put_back = []
    for message in sorted((broker / "processed").glob("*.celery.msg")):
        try:
            name, task_id = _experiment_of(json.loads(message.read_bytes()))
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue  # not an experiment's message
        if name in names and name not in put_back and not (results / f"celery-task-meta-{task_id}").exists():
            # Same file name back in in/: the worker takes it in its old place in the order.
            os.replace(message, broker / "in" / message.name)
            put_back.append(name)
    return put_back


def _experiment_of(message: dict) -> tuple[str, str]:
    """(experiment name, celery task id) of one of DVC's run_exp messages (kombu JSON, base64 body)."""
    if not message["headers"]["task"].endswith(".run_exp"):
        raise ValueError("not run_exp")
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    entry = kwargs.get("entry_dict") or args[0]
    return entry["name"], message["headers"]["id"]


def _status(repo: Path) -> QueueStatus:
    result = dvc_command(["queue", "status"], repo)
    if result.returncode != 0:
        raise SweepError(f"dvc queue status failed: {(result.stderr or result.stdout).strip()}")
    return parse_queue_status(result.stdout)


def _echo(line: str, err: bool) -> None:
    print(line, file=sys.stderr if err else sys.stdout, flush=True)
