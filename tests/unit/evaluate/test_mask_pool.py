"""What mask-eval's parent process holds when it forks its workers (evaluate/mask_pool.py)."""

from __future__ import annotations

import os
import subprocess
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


# What both scripts below share: 64 written blocks of 1.5 MiB freed but the last (as a run's
# activations come and go), after the process's thresholds rose to 8 MiB (and 16 MiB to trim), as
# loading a model and reading the splits raise them.
_BLOCKS = """
import ctypes, multiprocessing, sys
import emoneurons.evaluate.mask_pool as mask_pool

def resident_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20

def libc():
    lib = ctypes.CDLL("libc.so.6")
    lib.malloc.restype, lib.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    lib.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    return lib

def kept_after_freeing(_):
    lib, before = libc(), resident_mib()
    blocks = [lib.malloc(3 << 19) for _ in range(64)]
    for block in blocks:
        lib.memset(block, 1, 3 << 19)
    for block in blocks[:-1]:
        lib.free(block)
    return resident_mib() - before

lib = libc()
lib.free(lib.malloc(8 << 20))
"""

_WORKER_BLOCKS = _BLOCKS + """
context = multiprocessing.get_context("fork")
with context.Pool(1) as pool:
    plain = pool.map(kept_after_freeing, [0])[0]
with context.Pool(1, initializer=mask_pool._worker_start, initargs=(1,)) as pool:
    started = pool.map(kept_after_freeing, [0])[0]
print(plain, started)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and fork: Linux only")
def test_a_forked_worker_gives_back_its_large_blocks():
    """Once the parent has freed a large block, glibc serves blocks below that size from the heap and
    keeps them when freed (its thresholds rose); a worker started as mask-eval starts them maps its
    large blocks, which go back to the system when freed. In a fresh interpreter: blocks that fit in
    free space the heap already has are taken from it either way."""
    out = subprocess.run([sys.executable, "-c", _WORKER_BLOCKS], capture_output=True, text=True, check=True).stdout
    plain, started = map(float, out.split())
    assert plain > 60 and started < 10, (plain, started)


_PARENT_BLOCKS = _BLOCKS + """
mapped = mask_pool.map_parent_large_blocks(int(sys.argv[1]), int(sys.argv[2]))
print(mapped, kept_after_freeing(0))  # a chunk's unmodified run in the parent
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
@pytest.mark.parametrize(("workers", "chunks"), [(2, 2), (1, 2), (2, 1)])
def test_a_parent_that_will_fork_maps_its_large_blocks_before_its_unmodified_runs(workers, chunks):
    """mask-eval's parent, when it forks workers for the masks of several chunks, maps its large
    blocks as they do from before the first unmodified run: what its heap keeps after a run no
    longer depends on where glibc's thresholds had risen to. One process, or one chunk, keeps
    glibc's own thresholds (the mapping costs time)."""
    out = subprocess.run([sys.executable, "-c", _PARENT_BLOCKS, str(workers), str(chunks)], capture_output=True, text=True,
                         check=True).stdout
    mapped, kept = out.split()
    if workers > 1 and chunks > 1:
        assert mapped == "True" and float(kept) < 10, out
    else:
        assert mapped == "False" and float(kept) > 60, out
