"""What a CPU computation's float results depend on besides code, data and params: torch's
intra-op thread count (how a matmul's work is split among threads), the kernels torch and MKL
pick for this CPU (its capability level, its model) and the torch build. The thread count is set explicitly, from
EMONEURONS_THREADS when given, else the count torch chose at start (the cores it was given), so
a run never changes it midway, and a stage records all three beside its results."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from emoneurons.params import ParamsError

THREADS_ENV = "EMONEURONS_THREADS"


def pin_threads(environ: Mapping[str, str] = os.environ) -> int:
    """Set torch's intra-op threads from EMONEURONS_THREADS (a whole number >= 1) or keep torch's
    start-up choice, set explicitly either way; return the count. A bad value is one line."""
    raw = environ.get(THREADS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ParamsError(f"{THREADS_ENV}: {raw!r} (allowed: a whole number >= 1, or unset for torch's own choice)")
        threads = int(raw)
    else:
        threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    return threads


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; elsewhere the platform's word for it): the BLAS picks
    its kernels by CPU, and another kernel rounds differently."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compute_record(device: torch.device | str) -> dict[str, Any]:
    """What the results depend on besides code, data and params, for a stage's output record."""
    return {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": cpu_model()}
