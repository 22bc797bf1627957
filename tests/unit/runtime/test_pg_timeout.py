"""The process-group timeout (EMONEURONS_PG_TIMEOUT_S, distributed.process_group_timeout_s) reaches
torch's process group: two real gloo ranks, rank 1 never joins rank 0's barrier, and rank 0 gives
up after the configured 2 s (torch's own default would wait 30 min for gloo, 10 for nccl). A bad
value is one line naming the variable."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from emoneurons.params import ParamsError
from emoneurons.runtime.distributed import DEFAULT_PG_TIMEOUT_S, PG_TIMEOUT_ENV, process_group_timeout_s

RANK = """
import sys, time
from emoneurons.runtime.distributed import start
ranks = start("cpu")
print("joined", ranks.rank, ranks.world, flush=True)
if ranks.rank == 0:
    started = time.monotonic()
    try:
        ranks.barrier()
    except Exception as error:
        print(f"barrier failed after {time.monotonic() - started:.1f} s: {type(error).__name__}", flush=True)
        sys.exit(3)
    print("barrier passed", flush=True)
else:
    time.sleep(40)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_default_and_environment_and_bad_values():
    assert process_group_timeout_s({}) == DEFAULT_PG_TIMEOUT_S == 6 * 3600
    assert process_group_timeout_s({PG_TIMEOUT_ENV: " 90 "}) == 90.0
    for bad in ("abc", "0", "-5", "inf", "nan"):
        with pytest.raises(ParamsError) as error:
            process_group_timeout_s({PG_TIMEOUT_ENV: bad})
        assert str(error.value) == f"{PG_TIMEOUT_ENV}={bad!r}: not a number of seconds; allowed: a number > 0 (default 21600)"


def test_the_timeout_reaches_the_process_group():
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    env |= {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, PG_TIMEOUT_ENV: "2",
            "CUDA_VISIBLE_DEVICES": ""}
    procs = [subprocess.Popen([sys.executable, "-c", RANK], env=env | {"RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    try:
        started = time.monotonic()
        out, _ = procs[0].communicate(timeout=120)
        waited = time.monotonic() - started
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert "joined 0 2" in out, out
    assert procs[0].returncode == 3, out  # the barrier failed, it did not pass
    seconds = float(out.split("barrier failed after ")[1].split(" s")[0])
    assert 1.5 <= seconds < 20, out  # the 2 s timeout, not torch's 30-minute default
    assert waited < 100
