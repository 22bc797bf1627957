"""Faults: a stage killed with SIGKILL inside one of its output writes, a full disk, a read-only output folder,
Ctrl-C. The rerun after a kill completes, pays for no LLM answer that was already received, and
writes what an uninterrupted run writes; a write that fails leaves the previous output as it was
and says so in one line; Ctrl-C says what is kept and how to resume."""

from __future__ import annotations

import functools
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from emoneurons.backends.openai_backend import OpenAIChatBackend
from emoneurons.dataset.dialogues import llm_dialogues
from emoneurons.params import load_params
from helpers.environment import missing_under_ci
from helpers.fakes import PromptServer
from helpers.repo_params import params_dict, params_yaml
from helpers.stage_runner import REPO
from helpers.synthetic_inputs import synthetic_neurons, synthetic_split, write_synthetic_counts

pytestmark = pytest.mark.slow
TOPICS = ["Dogs", "sushi", "knitting", "rain"]


def _env(**extra: str) -> dict:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", **extra}


def _stage(project: Path, script: str, prefix: list[str] = (), **kwargs) -> subprocess.Popen:
    """The stage script in `project`; `prefix`: a command it runs under (_on_tmpfs, _without_override)."""
    return subprocess.Popen([*prefix, sys.executable, str(REPO / "stages" / f"{script}.py")], cwd=project, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def _kill_when(process: subprocess.Popen, ready, timeout_s: float = 300) -> bool:
    """SIGKILL `process` as soon as ready() holds; False when it ended first."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            process.kill()
            process.wait()
            return True
        time.sleep(0.005)
    return False


def _cache_entries(cache: Path) -> int:
    return len(list(cache.glob("??/*.json")))



def test_generate_and_filter_killed_midway_resume_without_asking_twice(tmp_path):
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    (tmp_path / "data").mkdir()
    pl.DataFrame({"topic": TOPICS, "round": [0] * 4, "parent": [None] * 4}, schema={"topic": pl.String, "round": pl.Int64, "parent": pl.String}).write_parquet(tmp_path / "data" / "topics.parquet")
    with PromptServer(latency_s=0.02) as server:
        endpoint = {"base_url": server.base_url, "model": "fake-model", "api_key_env": "EMONEURONS_NO_KEY", "concurrency": 2, "max_retries": 1, "timeout_s": 10}
        (tmp_path / "params.yaml").write_text(params_yaml({
            "generate": {"backend": "openai", "per_pair": 1, "openai": endpoint},
            "filter": {"min_agree": 2, "judges": [{"name": "api", "backend": "openai", "openai": params_dict()["augment"]["openai"] | endpoint}]},
        }))
        planned = len(TOPICS) * 6
        for stage, output, cache in (("generate", "data/dialogues.parquet", "data/cache/llm/generate"),
                                     ("filter", "data/filtered.parquet", "data/cache/llm/filter")):
            answered_before = server.requests
            kill_after = rng.randint(1, planned - 2)  # answers received before the kill
            process = _stage(tmp_path, stage)
            assert _kill_when(process, lambda: _cache_entries(tmp_path / cache) >= kill_after), f"{stage} ended first (seed {seed})"
            assert not (tmp_path / output).exists(), f"{stage}: a killed run left {output} (seed {seed})"
            kept = _cache_entries(tmp_path / cache)
            asked_then = server.requests - answered_before
            code, out, err = _finish(_stage(tmp_path, stage))
            assert code == 0, err
            rerun_asked = server.requests - answered_before - asked_then
            # Nothing received before the kill is asked again; only the rest (at most the requests
            # that were in flight when it died were asked before without an answer stored).
            assert rerun_asked == planned - kept, f"{stage}: rerun asked {rerun_asked}, {kept} of {planned} were cached (seed {seed})"
            assert _cache_entries(tmp_path / cache) == planned
        # The outputs are what one uninterrupted run gives: generate in process, fresh cache.
        params = load_params(tmp_path / "params.yaml")
        reference, _ = llm_dialogues(TOPICS, params.generate.emotions, 1, OpenAIChatBackend(params.generate.openai, tmp_path / "fresh", progress=False), 2)
    assert pl.read_parquet(tmp_path / "data" / "dialogues.parquet").equals(reference)
    filtered = pl.read_parquet(tmp_path / "data" / "filtered.parquet")
    assert filtered["id"].to_list() == reference["id"].to_list() and (filtered["judge_api"] == filtered["theme"]).all()
    report = json.loads((tmp_path / "reports" / "generate.json").read_text())
    assert report["usage"]["requests"] == planned and report["generated"] == planned


@pytest.fixture(scope="module")
def model_project(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny random Llama in a folder, a train/test split and a neuron selection for it."""
    from helpers.tiny_models import build_tiny_llama

    root = tmp_path_factory.mktemp("faults")
    model = build_tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(root / "tiny-llama")
    tiny_tokenizer.save_pretrained(root / "tiny-llama")
    (root / "data" / "split").mkdir(parents=True)
    synthetic_split(3).write_parquet(root / "data" / "split" / "train.parquet")
    synthetic_split(2, offset=10).write_parquet(root / "data" / "split" / "test.parquet")
    (root / "data" / "neurons").mkdir()
    neurons = synthetic_neurons(ratios=(0.01, 0.02), layers=model.config.num_hidden_layers, per_layer=model.config.intermediate_size)
    (root / "data" / "neurons" / "neurons.json").write_text(json.dumps(neurons))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(id=str(root / "tiny-llama"), batch_size=4)
    params["select"]["top_rate"] = 0.01
    params["eval"].update(ratios=[0.01, 0.02], layer_ranges=["all"], control_draws=1, bootstrap=50, null_draws=2)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # The counts matched controls draw by (the count test rewrites them with its own).
    write_synthetic_counts(root / "data" / "counts", model.config.num_hidden_layers, model.config.intermediate_size)
    return root


PREVIOUS = b"the previous run's output\n"


def _previous_outputs(project: Path, outputs: list[str]) -> dict[str, dict[str, bytes]]:
    """Put a previous run's outputs in place (bytes no run of this code writes), as DVC leaves them."""
    for output in outputs:
        target = project / output
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        if target.suffix:  # a file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(PREVIOUS)
        else:  # a folder of files
            target.mkdir(parents=True)
            for name in ("counts.safetensors", "meta.json", "checks.json"):
                (target / name).write_bytes(PREVIOUS)
    return {output: _snapshot(project / output) for output in outputs}


def _paused_stage(project: Path, script: str, outputs: list[str], **watch: str) -> subprocess.Popen:
    """The stage under tests/helpers/pause_at_write.py, which stops it inside a write to its outputs."""
    env = _env(EMONEURONS_WATCH=os.pathsep.join(str(project / o) for o in outputs), **watch)
    return subprocess.Popen([sys.executable, "-P", str(REPO / "tests" / "helpers" / "pause_at_write.py"), str(REPO / "stages" / f"{script}.py")],
                            cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# mask-eval's summary.json is a DVC metric, written last like the outs.
STAGE_OUTPUTS = [("count", ["data/counts"]),
                 ("mask_eval", ["reports/metrics/eval.checks.json", "reports/metrics/eval.json", "reports/metrics/headline.json", "reports/metrics/summary.json"])]


@pytest.mark.parametrize(("script", "outputs"), STAGE_OUTPUTS)
def test_count_and_mask_eval_killed_mid_write_keep_each_output_whole(model_project, script, outputs, tmp_path):
    """SIGKILL inside the stage's output writes, twice: once with a file half written (a write step
    drawn at random), once just before a rename or removal (drawn at random too; an atomic writer
    has them, the steps of tests/helpers/pause_at_write.py): each output is
    then its previous bytes or exactly what a whole run writes, never partial, mixed or missing,
    and the rerun writes the whole run's. FAULTS_SEED=<seed> replays a failure's draw."""
    previous = _previous_outputs(model_project, outputs)
    events = tmp_path / "events.txt"
    code, _, err = _finish(_paused_stage(model_project, script, outputs, EMONEURONS_EVENTS=str(events)))
    assert code == 0, err
    whole = {output: _snapshot(model_project / output) for output in outputs}
    assert all(whole[o] != previous[o] for o in outputs)
    steps = events.read_text().splitlines()
    writes = [i for i, s in enumerate(steps, 1) if s.split()[1] == "write"]
    others = [i for i, s in enumerate(steps, 1) if s.split()[1] != "write"]
    assert len(writes) >= len(outputs), steps  # each output's bytes are seen being written
    seed = int(os.environ.get("FAULTS_SEED") or random.randrange(10**6))
    draw = random.Random(seed)
    for pause_at in [draw.choice(writes)] + ([draw.choice(others)] if others else []):
        _previous_outputs(model_project, outputs)
        paused = tmp_path / f"paused-{pause_at}.txt"
        process = _paused_stage(model_project, script, outputs, EMONEURONS_PAUSE_AT=str(pause_at), EMONEURONS_PAUSED=str(paused))
        deadline = time.monotonic() + 300
        while not paused.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        where = f"at step {pause_at} of {len(steps)}, FAULTS_SEED={seed}: {paused.read_text().strip() if paused.exists() else steps[pause_at - 1]}"
        assert paused.exists() and process.poll() is None, f"the stage did not stop {where}: {process.communicate()[1][-2000:]}"
        process.kill()
        process.communicate(timeout=60)
        assert process.returncode == -signal.SIGKILL, where  # it was running, in the write, when it died
        for output in outputs:
            now = _snapshot(model_project / output) if (model_project / output).exists() else None
            assert now in (previous[output], whole[output]), f"{output}: {'missing' if now is None else 'partial or mixed'} after a SIGKILL {where}"
        # Beside each output, only the writer's temporary siblings (`.name.<host>-<pid>.*.tmp`), which DVC never reads.
        for output in outputs:
            target = model_project / output
            beside = [p.name for p in target.parent.iterdir() if target.name in p.name and p != target]
            assert all(re.fullmatch(rf"\.{re.escape(target.name)}\.[\w-]+-\d+\.\w+\.tmp", name) for name in beside), beside
    code, _, err = _finish(_stage(model_project, script))
    assert code == 0, err
    assert {output: _snapshot(model_project / output) for output in outputs} == whole
    # A temporary sibling the killed runs left is removed by the rerun's write.
    for output in outputs:
        assert not [p.name for p in (model_project / output).parent.iterdir() if p.name.endswith(".tmp")]


def _snapshot(path: Path) -> dict[str, bytes]:
    """Every file's bytes (one file, or a folder's files by relative path)."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _template_project(root: Path, n_topics: int) -> Path:
    (root / "data" / "cache" / "llm" / "generate").mkdir(parents=True)
    (root / "data" / "cache" / "llm" / "generate" / "README.txt").write_text("cache\n")
    topics = [f"topic {i}" for i in range(n_topics)]
    pl.DataFrame({"topic": topics, "round": [0] * n_topics, "parent": [None] * n_topics},
                 schema={"topic": pl.String, "round": pl.Int64, "parent": pl.String}).write_parquet(root / "data" / "topics.parquet")
    (root / "data" / "dialogues.parquet").write_bytes(b"the previous run's output")
    (root / "params.yaml").write_text(params_yaml({"generate": {"per_pair": 1}}))
    return root


def test_a_full_disk_fails_in_one_line_and_keeps_the_previous_output(tmp_path):
    project = _template_project(tmp_path, 40)
    limit = 4096  # bytes per file (RLIMIT_FSIZE): 240 dialogues do not fit

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    code, _, err = _finish(_stage(project, "generate", preexec_fn=small_files))
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("generate: data/dialogues.parquet: cannot write (File too large); nothing was put in its place")
    assert "Traceback" not in err
    assert (project / "data" / "dialogues.parquet").read_bytes() == b"the previous run's output"
    assert not (project / "reports" / "generate.json").exists()
    assert not [p for p in (project / "data").iterdir() if p.name.endswith(".tmp")]


# A read-only or full folder, made the same way as root or not, with or without the right to
# mount: a stage runs under a prefix command. No way here: a skip, a failure under CI=true.
TMPFS_SCRIPT = r"""
f=$FOLDER
mkdir "$f.kept" && cp -a "$f/." "$f.kept/" && mount -t tmpfs -o "size=$SIZE" tmpfs "$f" && cp -a "$f.kept/." "$f/" && rm -rf "$f.kept" || exit 97
if [ -n "${FILL-}" ]; then dd if=/dev/zero of="$f/.filler" bs=4096 2>/dev/null; truncate -s "-$FILL" "$f/.filler" || exit 97; fi
if [ -n "${RO-}" ]; then mount -o remount,ro "$f" || exit 97; fi
"$@"; code=$?
rm -f "$f/.filler"
mkdir "$f.kept" && cp -a "$f/." "$f.kept/" && umount "$f" && rm -rf "$f" && mv "$f.kept" "$f" || exit 98
exit $code
"""
SETUP_FAILED = (97, 98)  # TMPFS_SCRIPT could not make the tmpfs or put its files back


@functools.cache
def _mount_namespace() -> tuple[tuple[str, ...] | None, str]:
    """A command prefix giving a private mount namespace where a tmpfs can be mounted: `unshare -m`
    (root with the right to mount), else `unshare -rm` (a user namespace: any user, where the kernel
    allows them); (None, why) where neither works. Private: nothing is mounted outside the test."""
    probe = 'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$d" && mount -o remount,ro "$d" && umount "$d"; s=$?; rmdir "$d"; exit $s'
    refused = []
    for prefix in (("unshare", "-m"), ("unshare", "-rm")):
        try:
            done = subprocess.run([*prefix, "sh", "-c", probe], capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            return None, "no unshare (util-linux)"
        if done.returncode == 0:
            return prefix, ""
        refused.append(f"{' '.join(prefix)}: {(done.stderr.strip().splitlines() or ['exit ' + str(done.returncode)])[-1]}")
    return None, "; ".join(refused)


def _on_tmpfs(folder: Path, *, read_only: bool = False, leave_free: int | None = None, size: str = "4m") -> list[str]:
    """A prefix that runs the command with `folder` on a fresh tmpfs of `size` holding the folder's
    files: remounted read-only, or filled but for `leave_free` bytes; its files are put back after."""
    prefix, why = _mount_namespace()
    if prefix is None:
        missing_under_ci(f"no way to mount a tmpfs here ({why})")
    settings = [f"FOLDER={folder}", f"SIZE={size}", *(["RO=1"] if read_only else []), *([f"FILL={leave_free}"] if leave_free else [])]
    return [*prefix, "env", *settings, "sh", "-c", TMPFS_SCRIPT, "sh"]


def _without_override() -> list[str]:
    """A prefix under which permission bits bind: root's capabilities to override them dropped
    (setpriv); nothing for another user, whom they bind anyway."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
    try:
        works = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        missing_under_ci("root ignores permission bits, and setpriv (util-linux) is not here to drop that")
    if works.returncode != 0:
        missing_under_ci(f"root ignores permission bits, and setpriv cannot drop that here: {works.stderr.strip()}")
    return prefix


READ_ONLY_WAYS = {"permission bits": "Permission denied", "read-only mount": "Read-only file system"}


def _read_only(folder: Path, way: str) -> list[str]:
    """`folder` made read-only `way`: chmod 0555 (with root's override dropped), or a read-only tmpfs."""
    if way == "read-only mount":
        return _on_tmpfs(folder, read_only=True)
    os.chmod(folder, 0o555)
    return _without_override()


@pytest.mark.parametrize("way", READ_ONLY_WAYS)
def test_a_read_only_output_folder_fails_in_one_line_and_keeps_the_previous_output(tmp_path, way):
    project = _template_project(tmp_path, 3)
    try:
        code, _, err = _finish(_stage(project, "generate", _read_only(project / "data", way)))
    finally:
        os.chmod(project / "data", 0o755)
    assert code == 1, err
    line = err.strip().splitlines()[-1]
    # The first file it writes (the data checks' record, then the table) is refused.
    assert line.startswith("generate: data/dialogues.checks.json: cannot write (") and "Traceback" not in err
    assert READ_ONLY_WAYS[way] in line, line
    assert not (project / "data" / "dialogues.checks.json").exists()
    assert (project / "data" / "dialogues.parquet").read_bytes() == b"the previous run's output"


def test_ctrl_c_says_what_is_kept_and_how_to_resume(tmp_path):
    (tmp_path / "data").mkdir()
    pl.DataFrame({"topic": TOPICS, "round": [0] * 4, "parent": [None] * 4}, schema={"topic": pl.String, "round": pl.Int64, "parent": pl.String}).write_parquet(tmp_path / "data" / "topics.parquet")
    with PromptServer(latency_s=0.3) as server:
        endpoint = {"base_url": server.base_url, "model": "fake-model", "api_key_env": "EMONEURONS_NO_KEY", "concurrency": 1, "max_retries": 1, "timeout_s": 10}
        (tmp_path / "params.yaml").write_text(params_yaml({"generate": {"backend": "openai", "per_pair": 1, "openai": endpoint}}))
        process = _stage(tmp_path, "generate")
        deadline = time.monotonic() + 300
        while _cache_entries(tmp_path / "data/cache/llm/generate") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        code, _, err = _finish(process)
    kept = _cache_entries(tmp_path / "data/cache/llm/generate")
    assert code == 130
    assert err.strip().splitlines()[-1] == (
        f"generate: interrupted (Ctrl-C); none of its outputs was written or changed; the {kept} LLM answers "
        "received so far are kept in data/cache/llm/generate and will not be asked again; run `dvc repro` "
        "(or this script) again to resume"
    )
    assert not (tmp_path / "data" / "dialogues.parquet").exists()


def _plot(project: Path, prefix: list[str] = (), **kwargs) -> subprocess.Popen:
    # -P: stages/ holds select.py, which would shadow the standard library's `select` module.
    return subprocess.Popen([*prefix, sys.executable, "-P", str(REPO / "stages" / "plot.py")], cwd=project,
                            env=_env(MPLBACKEND="Agg"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _previous_plot_outputs(project: Path) -> None:
    (project / "reports" / "figures").mkdir(parents=True)
    (project / "reports" / "figures" / "old.png").write_bytes(b"the previous run's figure")
    (project / "reports" / "report.md").write_text("the previous run's report\n")


def _assert_plot_kept_the_previous_outputs(project: Path) -> None:
    assert [p.name for p in (project / "reports" / "figures").iterdir()] == ["old.png"]
    assert (project / "reports" / "report.md").read_text() == "the previous run's report\n"
    assert not (project / "reports" / "index.html").exists() and not (project / "reports" / "plots").exists()
    assert not [p for p in (project / "reports").rglob("*") if p.name.endswith(".tmp")]


def test_plot_on_a_full_disk_fails_in_one_line_and_keeps_the_previous_outputs(tmp_path):
    from helpers.synthetic_run import synthetic_run, write_run

    write_run(tmp_path, synthetic_run(seed=1))
    _previous_plot_outputs(tmp_path)
    limit = 4096  # bytes per file (RLIMIT_FSIZE): no figure fits

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    code, _, err = _finish(_plot(tmp_path, preexec_fn=small_files))
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("plot: reports/figures: cannot write (File too large); nothing was put in its place")
    _assert_plot_kept_the_previous_outputs(tmp_path)


@pytest.mark.parametrize("way", READ_ONLY_WAYS)
def test_plot_into_a_read_only_folder_fails_in_one_line_and_keeps_the_previous_outputs(tmp_path, way):
    from helpers.synthetic_run import synthetic_run, write_run

    write_run(tmp_path, synthetic_run(seed=1))
    _previous_plot_outputs(tmp_path)
    try:
        code, _, err = _finish(_plot(tmp_path, _read_only(tmp_path / "reports", way)))
    finally:
        os.chmod(tmp_path / "reports", 0o755)
    assert code == 1 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    # The first output it opens (the figures' temporary folder) is refused.
    assert line.startswith("plot: reports/figures: cannot write (") and READ_ONLY_WAYS[way] in line, line
    _assert_plot_kept_the_previous_outputs(tmp_path)


def test_plot_on_a_full_tmpfs_fails_in_one_line_and_keeps_the_previous_outputs(tmp_path):
    """A real full disk (ENOSPC): reports/ on a small tmpfs, filled up but for 8 KiB."""
    from helpers.synthetic_run import synthetic_run, write_run

    write_run(tmp_path, synthetic_run(seed=1))
    _previous_plot_outputs(tmp_path)
    code, _, err = _finish(_plot(tmp_path, _on_tmpfs(tmp_path / "reports", leave_free=8192, size="1m")))
    assert code == 1 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("plot: reports/") and "cannot write (No space left on device); nothing was put in its place" in line, line
    _assert_plot_kept_the_previous_outputs(tmp_path)
