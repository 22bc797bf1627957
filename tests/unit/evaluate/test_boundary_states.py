"""mask-eval's kept boundary states (evaluate/boundary_states.py): on a GPU they are kept off the
device (in host memory) and come back one batch at a time. Without a GPU, `offload_target` is
pointed at `meta` (a device that is not the model's) to see that the engine keeps nothing of them
on the model's device, and at the host itself (a real copy) to see the results do not change."""

from __future__ import annotations

import pytest
import torch

from emoneurons.evaluate import boundary_states
from emoneurons.evaluate.boundary_states import BoundaryStates, offload_target
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
