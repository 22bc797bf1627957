"""model/batching.py's batch plan: the same batches as the one-at-a-time greedy rule, held in arrays."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from emoneurons.model.batching import length_batch_plan, length_batches


def greedy_batches(lengths: list[int], batch_size: int, max_padding: float) -> list[list[int]]:
    """The rule written one sequence at a time: longest first (ties by index), and a batch takes
    the next sequence while it has room and its padding stays within max_padding of what it processes."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        if batches and len(batches[-1]) < batch_size:
            processed = lengths[batches[-1][0]] * (len(batches[-1]) + 1)
            real = sum(lengths[j] for j in batches[-1]) + lengths[i]
            if processed - real <= max_padding * processed:
                batches[-1].append(i)
                continue
        batches.append([i])
    return batches


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("batch_size", "max_padding"), [(1, 0.1), (3, 0.0), (8, 0.1), (16, 0.5), (5, 1.0)])
def test_the_plan_is_the_greedy_rule(seed, batch_size, max_padding):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, [4, 40, 1000][seed % 3], size=int(rng.integers(1, 400))).tolist()  # ties too
    plan = length_batch_plan(np.array(lengths), batch_size, max_padding)
    assert [plan[b].tolist() for b in range(len(plan))] == greedy_batches(lengths, batch_size, max_padding)
    assert length_batches(lengths, batch_size, max_padding) == greedy_batches(lengths, batch_size, max_padding)
    assert plan.members([len(plan) - 1, 0]).tolist() == [*plan[len(plan) - 1].tolist(), *plan[0].tolist()]
    assert plan.members([]).tolist() == []


def test_an_empty_plan():
    plan = length_batch_plan(np.zeros(0, dtype=np.int64), 4)
    assert len(plan) == 0 and length_batches([], 4) == []


def test_planning_holds_a_few_bytes_a_sequence():
    # count plans every train dialogue at once (273k at EmoPrism's volume): the plan and its making
    # must not hold a Python object per sequence (lists of ints and their sort keys held ~250 bytes each).
    lengths = np.random.default_rng(0).integers(100, 1060, size=200_000)
    tracemalloc.start()
    try:
        plan = length_batch_plan(lengths, 8, 0.1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(plan) > 1000
    assert peak < 48 * len(lengths), f"planning {len(lengths)} sequences peaked at {peak / len(lengths):.0f} bytes each"
