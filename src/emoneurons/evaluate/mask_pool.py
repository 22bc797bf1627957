"""The masked conditions run in forked single-threaded workers on a Linux CPU (in process elsewhere):
the engine and the masks are shared through a module global set just before the fork."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

from emoneurons.evaluate.classify import Classification, Mask, MaskedClassifier
from emoneurons.model.loading import LoadedModel

# The forked workers' view of the parent's engine and masks (set just before the fork, read-only there).
_SHARED: dict = {}


def mask_workers(lm: LoadedModel, n_masks: int) -> int:
    """How many processes run the masked conditions: on a Linux CPU one per intra-op thread (at most
    8), each single-threaded; else 1 (in process). Single-threaded workers beat one process with
    OpenMP threads: the many small element-wise ops of a forward pass pay a barrier per op, which
    costs milliseconds whenever another process holds a core (2x slower on a shared 2-core machine)."""
    if lm.device.type != "cpu" or not sys.platform.startswith("linux"):
        return 1
    return max(1, min(torch.get_num_threads(), 8, n_masks))


def _glibc():
    """The C library, where it is glibc (with malloc_trim and mallopt); None elsewhere (musl, macOS)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def release_freed_memory() -> None:
    """Hand the heap memory this process freed back to the system (gc, then glibc's malloc_trim;
    a no-op where there is no glibc). Before a fork: what the parent freed but glibc kept (reading
    the train split, the chunk before) is otherwise resident in the parent and counted again in
    every forked worker's RSS (measured, and what it does not explain: bench/RESULTS.md, "mask-eval's
    memory against each split's size")."""
    import gc

    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


# Blocks from this size up get mappings of their own (glibc's M_MMAP_THRESHOLD, fixed), given back
# to the system when freed: in each forked worker, and (several chunks) in their parent from its first
# unmodified run. glibc otherwise raises its thresholds as large blocks are freed, at points that
# vary from run to run, and activations then come from the heap and stay resident when freed: up to
# ~0.45 GiB of a worker's own (mapped: ~40 MiB, for ~8% more time in mask-eval: bench/RESULTS.md,
# "The pipeline at 30% and 100% ... with the processes' PSS"), and 60-150 MiB of the parent's heap
# above a chunk's states, a different amount each run ("mask-eval's parent").
MMAP_THRESHOLD = 1 << 20


def map_large_blocks(threshold: int) -> bool:
    """Have glibc serve blocks of `threshold` bytes and more from mappings of their own (returned to
    the system when freed) instead of from the heap; False where there is no glibc."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(-3, threshold))  # -3: M_MMAP_THRESHOLD


def map_parent_large_blocks(workers: int, chunks: int) -> bool:
    """In a process about to run the unmodified runs of `chunks` chunks and fork `workers` for the
    masks: its large blocks mapped from now on, as the workers' are (MMAP_THRESHOLD), when there are
    workers (> 1) and more than one chunk (the states at chunking's cap, where the heap's swing was
    up to ~0.2 GiB of the stage's peak). It costs time: the workers then find little free heap to
    reuse and map their blocks afresh (mask-eval ~10% slower at EmoPrism's volume: bench/RESULTS.md,
    "mask-eval's parent ... its large blocks mapped"), which one small chunk (the default run's) is
    not worth. False when not done, or where there is no glibc."""
    return workers > 1 and chunks > 1 and map_large_blocks(MMAP_THRESHOLD)


def _worker_start(threads: int) -> None:
    torch.set_num_threads(threads)
    map_large_blocks(MMAP_THRESHOLD)


def _run(engine: MaskedClassifier, mask: Mask, index: int, reduce: Callable[[int, Classification], Any] | None) -> Any:
    """One mask's (predicted, label scores, tokens computed), or reduce(index, its classification)."""
    result = engine.classify(mask.neurons, scale=mask.scale)
    if reduce is not None:
        return reduce(index, result)
    return result.predicted, result.scores, result.tokens_computed


def _worker_classify(index: int) -> tuple[int, Any]:
    return index, _run(_SHARED["engine"], _SHARED["masks"][index], index, _SHARED["reduce"])


def classify_masks(
    engine: MaskedClassifier, masks: Sequence[Mask], workers: int, bar, todo: Sequence[int] | None = None,
    on_result: Callable[[int, tuple], None] | None = None, reduce: Callable[[int, Classification], Any] | None = None,
    step: int = 1,
) -> list:
    """(predicted, label scores, tokens computed) of each mask in `todo` (default: all; None for the
    others), after the unmodified run (whose kept states the forked workers inherit); the costliest
    masks (lowest start layer) go first. on_result(index, that tuple) and bar.update(step) as each finishes.
    `reduce`: what is kept of each run instead of that tuple, computed where the run ran (in the
    worker), so that only it crosses back and is held (the draw-level null keeps one number a draw)."""
    out: list = [None] * len(masks)
    todo = range(len(masks)) if todo is None else todo
    if workers <= 1:
        for index in todo:
            out[index] = _run(engine, masks[index], index, reduce)
            if on_result is not None:
                on_result(index, out[index])
            bar.update(step)
        return out
    order = sorted(todo, key=lambda i: engine.start_layer(masks[i].neurons))
    threads = max(1, torch.get_num_threads() // workers)
    _SHARED.update(engine=engine, masks=masks, reduce=reduce)
    release_freed_memory()
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_start, initargs=(threads,)) as pool:
            for index, result in pool.imap_unordered(_worker_classify, order):
                out[index] = result
                if on_result is not None:
                    on_result(index, out[index])
                bar.update(step)
    finally:
        _SHARED.clear()
    return out
