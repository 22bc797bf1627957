"""Shared fixtures: offline env, and a tiny randomly initialised Llama with its own tokenizer (built
by tests/helpers/tiny_models.py, where test files and bench/ import the builders from)."""

from __future__ import annotations

import os

# Set before anything imports transformers/dvc/great_expectations.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["GX_ANALYTICS_ENABLED"] = "False"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pytest
import torch

# Tiny models: one thread is 30-60x faster than two fighting over a loaded 2-core machine.
torch.set_num_threads(1)

from helpers.tiny_models import build_tiny_llama, build_tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama(tiny_tokenizer):
    """A LoadedModel: 4-layer random Llama (hidden 32, FFN 64) with an in-process tokenizer."""
    from emoneurons.model.loading import LoadedModel

    model = build_tiny_llama(len(tiny_tokenizer))
    model.config.pad_token_id = tiny_tokenizer.pad_token_id
    return LoadedModel(model=model, tokenizer=tiny_tokenizer, name="tiny-random-llama")


@pytest.fixture
def tensor_reads(monkeypatch):
    """Counts calls that bring a tensor's values to the host (.cpu(), .tolist(), .item(), .numpy()):
    on a GPU each is a copy and a sync. A CPU run cannot see a sync, so tests compare the counts
    of runs that differ only in their number of batches."""
    from collections import Counter

    calls: Counter = Counter()
    for name in ("cpu", "tolist", "item", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


@pytest.fixture(scope="module")
def one_thread():
    """The tiny model's ops are microseconds: with 2 threads on a busy 2-core machine, OpenMP
    waits on descheduled threads and each op takes ~30 ms (a file: 90 s instead of 3 s). A test
    module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_unconfigure(config) -> None:
    """The very last lines of a run (after pytest's own count line): how many tests were skipped,
    and each one's reason, so a skip is never silent (`make test`, bench/RESULTS.md's test figures)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput"):  # an xdist worker: the controller reports
        return
    skipped = [r for r in reporter.stats.get("skipped", []) if getattr(r, "longrepr", None)]
    reporter.write_line(f"skipped: {len(skipped)}" + (", each with its reason:" if skipped else ""))
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reporter.write_line(f"  {report.nodeid}: {reason.removeprefix('Skipped: ')}")


# The modules that take minutes on 2 cores, longest first (their times: bench/RESULTS.md, "The test suite").
# `make test` runs `--dist loadfile --no-loadscope-reorder`, so xdist hands the modules out in
# this order and the quick ones fill in around them; by default it would order modules by their
# number of tests and start the longest one last. test_pipeline_queue.py waits for the project
# test_pipeline_dvc.py's worker builds, so it comes after a few others.
LONGEST_FIRST = ["test_pipeline_dvc.py", "test_distributed.py", "test_faults.py", "test_dvc_runs.py",
                 "test_pipeline_queue.py", "test_llama_server.py", "test_lower_end.py", "test_versions.py",
                 "test_gpu_check.py"]


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
