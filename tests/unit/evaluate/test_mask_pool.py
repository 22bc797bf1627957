"""What mask-eval's parent process holds when it forks its workers (evaluate/mask_pool.py)."""

from __future__ import annotations

import os
import sys

import pytest

from emoneurons.evaluate.mask_pool import release_freed_memory


def _resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc: Linux only")
def test_memory_freed_but_kept_by_the_heap_goes_back_to_the_system():
    """~200 MiB of 700-byte objects (glibc's heap, not Python's small-object arenas), one in 64 kept
    so the heap cannot shrink from its top: freed, it stays resident (and would be counted again in
    every forked worker); release_freed_memory hands most of it back."""
    before = _resident_mib()
    objects = [bytearray(700) for _ in range(300_000)]
    kept = objects[::64]
    del objects
    held = _resident_mib()
    assert held - before > 100, (before, held)  # freed, still resident
    release_freed_memory()
    released = _resident_mib()
    assert held - released > 100, (before, held, released)
    assert len(kept) == 4688
