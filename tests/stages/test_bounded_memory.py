"""Memory that does not grow with the data (docs/SCALE.md): filter (on an EmoPrism file) and count run
as the pipeline runs them, a process each, on N and on 4N synthetic records; the child's peak
resident set size (its own getrusage, from os.wait4) grows by far less than the 3N records it
reads more: held whole, as before, they cost several times their size on disk."""

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
from helpers.synthetic_inputs import emoprism_record


def _peak_rss_mib(stage: str, cwd: Path, *args: object) -> float:
    """stages/<stage>.py run in `cwd`; its peak RSS in MiB (it must succeed)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, str(stage_script(stage)), *map(str, args)], cwd=cwd, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.stdout.close()
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0, output[-3000:]
    return usage.ru_maxrss / 1024


def _dialogue(i: int, turns: int, repeats: int) -> str:
    return "\n".join(f"{'AB'[t % 2]}: Turn {t} of talk {i}: the weather, the bus, {'and then more of it ' * repeats}"
                     f"so I was {EMOTIONS[(i + t) % 6]} about it." for t in range(turns))


def _filter_project(root: Path, records: int) -> Path:
    (root / "data" / "external").mkdir(parents=True)
    rows = [emoprism_record(f"topic {i % 50}", EMOTIONS[i % 6], EMOTIONS[i % 6], EMOTIONS[i % 6], "I cannot tell",
                            dialogue=_dialogue(i, 4, 230)) for i in range(records)]
    (root / "data" / "external" / "emoprism.json").write_text(json.dumps(rows))
    (root / "params.yaml").write_text(params_yaml({"filter": {"source": "emoprism", "min_agree": 3}}))
    return root


def test_filter_memory_does_not_grow_with_the_records(tmp_path):
    n = 300  # few long records: the data checks' cost is per batch and per line, the memory per byte
    small, large = _filter_project(tmp_path / "n", n), _filter_project(tmp_path / "4n", 4 * n)
    peaks = [_peak_rss_mib("filter", project, "--batch-rows", n) for project in (small, large)]
    extra = ((large / "data/external/emoprism.json").stat().st_size - (small / "data/external/emoprism.json").stat().st_size) / 2**20
    assert pl.read_parquet(large / "data/filtered.parquet").height == 4 * n
    assert extra > 15, extra  # each record ~19 KB: 3N more are ~16 MiB of JSON
    # Held whole (one table through the data checks: `--batch-rows` past 4N) the peak grew by ~10x
    # `extra` (170 MiB for 16); a batch at a time by ~1.4x (22 MiB: the arrow writer's and GX's
    # pools settle over the first few batches, whatever the number after them).
    assert peaks[1] - peaks[0] < 3 * extra, (peaks, extra)


def _count_project(root: Path, tiny_llama, dialogues: int) -> Path:
    (root / "data" / "split").mkdir(parents=True)
    tiny_llama.model.save_pretrained(root / "tiny")
    tiny_llama.tokenizer.save_pretrained(root / "tiny")
    pl.DataFrame({"theme": [EMOTIONS[i % 6] for i in range(dialogues)],
                  "dialogue": [_dialogue(i, 2, 90) for i in range(dialogues)]}).write_parquet(root / "data/split/train.parquet")
    # max_length 48: the forward is cheap, while tokenizing (all of each dialogue's ~2,000 tokens) is what grew.
    (root / "params.yaml").write_text(params_yaml({"model": {"id": str(root / "tiny"), "batch_size": 64, "max_length": 48}}))
    return root


def test_count_memory_does_not_grow_with_the_dialogues(tmp_path, tiny_llama):
    n = 300  # few long dialogues: tokenizing them is what held memory, the forward is cut to 48 tokens
    small, large = _count_project(tmp_path / "n", tiny_llama, n), _count_project(tmp_path / "4n", tiny_llama, 4 * n)
    peaks = [_peak_rss_mib("count", project, "--checkpoints", project / "ck") for project in (small, large)]
    tokens = len(tiny_llama.tokenizer(_dialogue(0, 2, 90))["input_ids"])
    meta = json.loads((large / "data/counts/meta.json").read_text())
    assert sum(meta["dialogues"].values()) == 4 * n and meta["truncated"]["dialogues"] == 4 * n
    # 3N more dialogues of `tokens` ids, as Python lists of ints (~36 bytes an id): `held` (47 MiB).
    # Tokenized up front (counting_inputs over all of them, as count did) the peak grew by ~4x that
    # (191 MiB: the encodings and the items); kept on disk by ~0.3x (14 MiB: one piece read at a time).
    held = 3 * n * tokens * 36 / 2**20
    assert held > 40, held
    assert peaks[1] - peaks[0] < held, (peaks, held)


_SPLIT_CHECK_PEAK = """
import sys
import polars as pl
from emoneurons.dataset.split import held_out_ids
from emoneurons.io.suites import check_split, load_gx
load_gx()
n = int(sys.argv[1])
keys = pl.DataFrame({"id": [f"{(i * 2654435761) % 2**64:016x}" for i in range(n)],
                     "theme": ["anger", "disgust", "fear", "happiness", "sadness", "surprise"] * (n // 6)})
held = pl.col("id").is_in(held_out_ids(keys, 0.05, 0).implode())
train, test = keys.filter(~held), keys.filter(held)
def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from what is resident now
resident = kib("VmRSS:")
check_split(train, test, 0.05, sources=("train", "test"))
print((kib("VmHWM:") - resident) / 1024)  # the checks' own peak above it, in MiB
"""


def test_split_checks_memory_does_not_grow_with_the_ids():
    """split's data checks see every id (unique across both parts). With GX given the id strings,
    its pandas copies of them grew the checks' own peak by ~80 MiB from 60k to 240k ids (54 -> 135
    MiB above what was resident before them; ~300 MiB at 864k); given integer codes, by ~26 (27 -> 53)."""
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    added = [float(subprocess.run([sys.executable, "-c", _SPLIT_CHECK_PEAK, str(n)], env=env, capture_output=True,
                                  text=True, check=True).stdout.split()[-1]) for n in (60_000, 240_000)]
    assert added[1] - added[0] < 50, added
