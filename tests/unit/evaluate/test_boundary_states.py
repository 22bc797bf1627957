"""mask-eval's kept boundary states (evaluate/boundary_states.py): on a GPU they are kept off the
device (in host memory) and come back one batch at a time. Without a GPU, `offload_target` is
pointed at `meta` (a device that is not the model's) to see that the engine keeps nothing of them
on the model's device, and at the host itself (a real copy) to see the results do not change. On
the CPU they are packed into large blocks (`StateBlocks`), so that what the unmodified run holds
grows with the states and not also with the heap's gaps between them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emoneurons.evaluate import boundary_states
from emoneurons.evaluate.boundary_states import ALIGN_BYTES, BoundaryStates, StateBlocks, offload_target
from emoneurons.evaluate.classify import MaskedClassifier
from emoneurons.text.classification_prompt import classification_prompt

DIALOGUES = [
    "A: I can't believe this happened!\nB: Oh no, that is terrible.",
    "A: What a wonderful day.",
    "A: That smell is revolting.\nB: I'm scared of the dark.\nA: I miss her so much.\nB: Oh no.",
    "A: Oh no!",
]
TOP = {2: torch.tensor([1, 7, 30]), 3: torch.tensor([4, 11])}

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gpu_states_go_to_the_host_and_cpu_states_stay():
    assert offload_target(torch.device("cuda", 1)) == torch.device("cpu")
    assert offload_target(torch.device("cpu")) is None
    state = torch.randn(2, 3, 4)
    kept = BoundaryStates({5: state})
    assert kept[5] is state and kept.device_bytes() == state.numel() * 4


def test_an_offloaded_state_is_a_copy_read_back_on_its_own_device(monkeypatch):
    monkeypatch.setattr(boundary_states, "offload_target", lambda device: torch.device("cpu"))
    state = torch.randn(2, 3, 4)
    kept = BoundaryStates({5: state})
    assert kept._stored[5][0].data_ptr() != state.data_ptr()  # really copied
    assert torch.equal(kept[5], state) and kept[5].device == state.device


def _engine(lm):
    return MaskedClassifier(lm, classification_prompt(lm.tokenizer, prompt_format="chat"), DIALOGUES, "score", batch_size=2, boundaries=[2],
                            label_format="bare", max_new_tokens=8, recalibrate=False)


def test_the_engine_keeps_no_boundary_state_on_the_models_device(tiny_llama, monkeypatch):
    monkeypatch.setattr(boundary_states, "offload_target", lambda device: torch.device("meta"))
    engine = _engine(tiny_llama)
    engine.classify()
    assert engine.multi, "the test needs multi-token labels (the continuation's kept states)"
    for batch in engine.batches:
        for kept in (batch.boundary, batch.continuation_boundary):
            assert isinstance(kept, BoundaryStates) and kept.stored_devices() == {2: torch.device("meta")}
            assert kept.device_bytes() == 0


def test_offloaded_states_give_the_same_scores(tiny_llama, monkeypatch):
    plain = _engine(tiny_llama)
    plain.classify()
    expected = plain.classify(TOP)
    monkeypatch.setattr(boundary_states, "offload_target", lambda device: torch.device("cpu"))
    offloaded = _engine(tiny_llama)
    offloaded.classify()
    result = offloaded.classify(TOP)
    assert torch.equal(result.scores, expected.scores) and result.predicted == expected.predicted
    assert result.tokens_computed == expected.tokens_computed < offloaded.classify().tokens_computed


def test_state_blocks_pack_aligned_copies_and_start_a_block_when_one_is_full():
    blocks = StateBlocks(block_bytes=4096)
    states = [torch.randn(3, 5, 7), torch.randn(2, 9), torch.randn(40, 40), torch.randn(4, dtype=torch.float64), torch.randn(3, 5)]
    copies = [blocks.store(state) for state in states]
    for state, copy in zip(states, copies):
        assert torch.equal(copy, state) and copy.dtype == state.dtype and copy.data_ptr() != state.data_ptr()
        assert copy.data_ptr() % ALIGN_BYTES == 0
    storage = [copy.untyped_storage().data_ptr() for copy in copies]
    assert storage[0] == storage[1]  # packed: 105 + 18 floats fit one 4 KiB block
    assert copies[1].data_ptr() - copies[0].data_ptr() == 448  # 420 bytes, up to the next 64
    assert copies[2].untyped_storage().nbytes() == 6400  # larger than a block: a block of its own
    assert len(set(storage[2:])) == 3  # a new dtype starts a block, the next float32 one too


def test_cpu_states_are_kept_in_blocks_and_give_the_same_scores(tiny_llama):
    engine = _engine(tiny_llama)
    engine.classify()
    stored = [kept._stored[2][0] for batch in engine.batches for kept in (batch.boundary, batch.continuation_boundary)]
    assert len({state.untyped_storage().data_ptr() for state in stored}) == 1  # one block holds them all
    assert stored[0].untyped_storage().nbytes() == StateBlocks().block_bytes
    in_place = _engine(tiny_llama)
    in_place.classify()
    for batch in in_place.batches:  # what the engine kept before the blocks
        batch.boundary = BoundaryStates(batch.boundary)
    expected = in_place.classify(TOP)
    result = engine.classify(TOP)
    assert torch.equal(result.scores, expected.scores) and result.tokens_computed == expected.tokens_computed


_UNMODIFIED_RUN_PEAK = """
import random, sys
import torch
from emoneurons.evaluate.classify import MaskedClassifier
from emoneurons.model.loading import LoadedModel
from emoneurons.text.classification_prompt import classification_prompt
from helpers.tiny_models import build_tiny_llama, build_tokenizer
torch.set_num_threads(1)
n = int(sys.argv[1])
tokenizer = build_tokenizer()
model = build_tiny_llama(len(tokenizer), layers=8, hidden=64, intermediate=256)
model.config.pad_token_id = tokenizer.pad_token_id
lm = LoadedModel(model=model, tokenizer=tokenizer, name="tiny")
rng = random.Random(0)
words = "I can't believe this happened oh no that is terrible what a wonderful day it smells revolting".split()
dialogues = ["\\n".join(f"{'AB'[t % 2]}: " + " ".join(rng.choice(words) for _ in range(rng.randint(8, 14)))
                         for t in range(rng.randint(6, 10))) for _ in range(n)]
engine = MaskedClassifier(lm, classification_prompt(tokenizer, prompt_format="chat"), dialogues, "score", batch_size=16,
                          boundaries=range(1, 8), label_format="bare", max_new_tokens=8, recalibrate=False)
def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from what is resident now
resident = kib("VmRSS:")
engine.classify()
states = sum(t.numel() * t.element_size() for b in engine.batches for kept in (b.boundary, b.continuation_boundary)
             for t in kept.values())
print(states / 2**20, (kib("VmHWM:") - resident) / 1024)  # the states and the run's own peak, in MiB
"""


def test_the_unmodified_runs_peak_grows_with_its_states_alone():
    """The run's own peak (VmHWM above what was resident before it) over 300 and 600 dialogues. Kept
    in place, the states left gaps in the heap that the next batches' activations could not reuse:
    the peak grew 226 MiB for 106 MiB more states (308 -> 534 MiB); packed in blocks, 100-119 MiB
    over three runs (e.g. 179 -> 299)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    runs = [tuple(map(float, subprocess.run([sys.executable, "-c", _UNMODIFIED_RUN_PEAK, str(n)], env=env, capture_output=True,
                                            text=True, check=True).stdout.split()[-2:])) for n in (300, 600)]
    (states, peak), (more_states, more_peak) = runs
    assert more_states > 1.8 * states, runs
    assert more_peak - peak < 1.5 * (more_states - states), runs
