"""Faults: a stage killed with SIGKILL at a random point, a full disk, a read-only output folder,
Ctrl-C. The rerun after a kill completes, pays for no LLM answer that was already received, and
writes what an uninterrupted run writes; a write that fails leaves the previous output as it was
and says so in one line; Ctrl-C says what is kept and how to resume."""

from __future__ import annotations

import json
import os
import random
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
from test_conditions import _split, synthetic_neurons
from repo_params import params_dict, params_yaml
from test_secrets import PromptServer

from emoneurons.backends.openai_backend import OpenAIChatBackend
from emoneurons.dialogues import llm_dialogues
from emoneurons.params import load_params

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
TOPICS = ["Dogs", "sushi", "knitting", "rain"]


def _env(**extra: str) -> dict:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", **extra}


def _stage(project: Path, script: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "stages" / f"{script}.py")], cwd=project, env=_env(),
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
    from conftest import build_tiny_llama

    root = tmp_path_factory.mktemp("faults")
    model = build_tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(root / "tiny-llama")
    tiny_tokenizer.save_pretrained(root / "tiny-llama")
    (root / "data" / "split").mkdir(parents=True)
    _split(3).write_parquet(root / "data" / "split" / "train.parquet")
    _split(2, offset=10).write_parquet(root / "data" / "split" / "test.parquet")
    (root / "data" / "neurons").mkdir()
    neurons = synthetic_neurons(ratios=(0.01, 0.02), layers=model.config.num_hidden_layers, per_layer=model.config.intermediate_size)
    (root / "data" / "neurons" / "neurons.json").write_text(json.dumps(neurons))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(id=str(root / "tiny-llama"), batch_size=4)
    params["select"]["top_rate"] = 0.01
    params["eval"].update(ratios=[0.01, 0.02], layer_ranges=["all"], control_draws=1, bootstrap=50)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


@pytest.mark.parametrize(("script", "outputs"), [("count", ["data/counts"]), ("mask_eval", ["reports/metrics/eval.json", "reports/metrics/headline.json"])])
def test_count_and_mask_eval_killed_at_a_random_point_leave_nothing_partial(model_project, script, outputs):
    for output in outputs:
        target = model_project / output
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    code, _, err = _finish(_stage(model_project, script))
    assert code == 0, err
    whole = {output: _snapshot(model_project / output) for output in outputs}
    for output in outputs:
        target = model_project / output
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    delay = random.uniform(0.5, 8.0)
    process = _stage(model_project, script)
    time.sleep(delay)
    process.kill()
    process.wait()
    for output in outputs:  # absent, or exactly what a whole run writes
        target = model_project / output
        assert not target.exists() or _snapshot(target) == whole[output], f"{output} partial after a kill at {delay:.2f}s"
    code, _, err = _finish(_stage(model_project, script))
    assert code == 0, err
    assert {output: _snapshot(model_project / output) for output in outputs} == whole
    # A temporary sibling the killed run left (`.name.<pid>.*.tmp`) is removed by the rerun's write.
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


@pytest.fixture
def read_only_data(tmp_path):
    """data/ of a template project made read-only: a read-only tmpfs for root (root ignores
    permission bits), chmod for anyone else."""
    project = tmp_path / "project"
    project.mkdir()
    if os.geteuid() != 0:
        _template_project(project, 3)
        os.chmod(project / "data", 0o555)
        yield project
        os.chmod(project / "data", 0o755)
        return
    (project / "data").mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(project / "data")], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"root without the right to mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        _template_project(project, 3)
        subprocess.run(["mount", "-o", "remount,ro", str(project / "data")], check=True)
        yield project
    finally:
        subprocess.run(["umount", str(project / "data")], check=True)


def test_a_read_only_output_folder_fails_in_one_line_and_keeps_the_previous_output(read_only_data):
    code, _, err = _finish(_stage(read_only_data, "generate"))
    assert code == 1
    line = err.strip().splitlines()[-1]
    # The first file it writes (the data checks' record, then the table) is refused.
    assert line.startswith("generate: data/dialogues.checks.json: cannot write (") and "Traceback" not in err
    assert not (read_only_data / "data" / "dialogues.checks.json").exists()
    assert "Read-only file system" in line or "Permission denied" in line
    assert (read_only_data / "data" / "dialogues.parquet").read_bytes() == b"the previous run's output"


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


def _plot(project: Path, **kwargs) -> subprocess.Popen:
    # -P: stages/ holds select.py, which would shadow the standard library's `select` module.
    return subprocess.Popen([sys.executable, "-P", str(REPO / "stages" / "plot.py")], cwd=project,
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
    from test_figures import synthetic_run, write_run

    write_run(tmp_path, synthetic_run(seed=1))
    _previous_plot_outputs(tmp_path)
    limit = 4096  # bytes per file (RLIMIT_FSIZE): no figure fits

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    code, _, err = _finish(_plot(tmp_path, preexec_fn=small_files))
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("plot: reports/figures: cannot write (File too large); nothing was put in its place")
    _assert_plot_kept_the_previous_outputs(tmp_path)


def test_plot_into_a_read_only_folder_fails_in_one_line_and_keeps_the_previous_outputs(tmp_path):
    from test_figures import synthetic_run, write_run

    reports = tmp_path / "reports"
    reports.mkdir()
    if os.geteuid() != 0:
        write_run(tmp_path, synthetic_run(seed=1))
        _previous_plot_outputs(tmp_path)
        os.chmod(reports, 0o555)
        try:
            code, _, err = _finish(_plot(tmp_path))
        finally:
            os.chmod(reports, 0o755)
    else:  # root ignores permission bits: a read-only tmpfs
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(reports)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip(f"root without the right to mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
        try:
            write_run(tmp_path, synthetic_run(seed=1))
            _previous_plot_outputs(tmp_path)
            subprocess.run(["mount", "-o", "remount,ro", str(reports)], check=True)
            code, _, err = _finish(_plot(tmp_path))
            _assert_plot_kept_the_previous_outputs(tmp_path)
        finally:
            subprocess.run(["umount", str(reports)], check=True)
    assert code == 1 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    # The first output it opens (the figures' temporary folder) is refused.
    assert line.startswith("plot: reports/figures: cannot write (") and ("Read-only file system" in line or "Permission denied" in line)
    if os.geteuid() != 0:
        _assert_plot_kept_the_previous_outputs(tmp_path)


def test_plot_on_a_full_tmpfs_fails_in_one_line_and_keeps_the_previous_outputs(tmp_path):
    """A real full disk (ENOSPC): reports/ on a small tmpfs, filled up but for a few kilobytes."""
    from test_figures import synthetic_run, write_run

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE test above covers the same path")
    reports = tmp_path / "reports"
    reports.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(reports)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"root without the right to mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        write_run(tmp_path, synthetic_run(seed=1))
        _previous_plot_outputs(tmp_path)
        with (reports / "filler").open("wb", buffering=0) as filler:  # up to the last byte, then give 8 KiB back
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError:
                pass
        os.truncate(reports / "filler", max(os.path.getsize(reports / "filler") - 8192, 0))
        code, _, err = _finish(_plot(tmp_path))
        (reports / "filler").unlink()
        assert code == 1 and "Traceback" not in err
        line = err.strip().splitlines()[-1]
        assert line.startswith("plot: reports/") and "cannot write (No space left on device); nothing was put in its place" in line
        _assert_plot_kept_the_previous_outputs(tmp_path)
    finally:
        subprocess.run(["umount", str(reports)], check=True)
