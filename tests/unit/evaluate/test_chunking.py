"""mask-eval a chunk of the test dialogues at a time (evaluate/chunking.py): the chunks are whole
length-sorted batches, and a run in many chunks writes what the run in one chunk writes (but the
prefix and calibration rows computed again, and the draw-level null's means summed by chunk) and
resumes chunk by chunk after a kill."""

from __future__ import annotations

import pytest
import torch

import emoneurons.evaluate.chunking as chunking
from emoneurons.evaluate.chunking import chunked_rows
from emoneurons.evaluate.conditions import plan_conditions, unique_masks
from emoneurons.evaluate.masking_eval import evaluate_masking
from emoneurons.io.neurons_file import NeuronsFile, parse_neurons
from emoneurons.model.batching import length_buckets
from emoneurons.runtime.checkpoint import Checkpoints
from emoneurons.runtime.distributed import Ranks
from emoneurons.runtime.resume import ConditionSchedule
from helpers.repo_params import section
from helpers.synthetic_inputs import synthetic_neurons, synthetic_split


def test_chunks_are_whole_length_sorted_batches_within_the_budget():
    lengths = [7, 3, 9, 3, 12, 5, 8, 8, 1, 6, 4]
    batches = length_buckets(lengths, 3)
    chunks = chunked_rows(lengths, 3, per_token=10, budget=3 * 9 * 10 + 3 * 12 * 10)
    assert sorted(row for chunk in chunks for row in chunk) == list(range(len(lengths)))
    assert all(chunk == sorted(chunk) for chunk in chunks)
    # Each chunk is a run of whole batches, in the batches' order.
    flat = [set(batch) for batch in batches]
    at = 0
    for chunk in chunks:
        run = set()
        while len(run) < len(chunk):
            run |= flat[at]
            at += 1
        assert run == set(chunk)
        widths = [max(lengths[i] for i in b) * len(b) * 10 for b in batches if set(b) <= set(chunk)]
        assert sum(widths) <= 3 * 9 * 10 + 3 * 12 * 10 or len(widths) == 1
    assert len(chunks) > 1
    assert chunked_rows(lengths, 3, per_token=10) == [list(range(len(lengths)))]  # the default budget: one chunk
    assert len(chunked_rows(lengths, 3, per_token=10, budget=1)) == len(batches)  # a batch alone over it


PARAMS = section("eval", ratios=(0.02,), layer_ranges=("top", "all"), control_draws=1, bootstrap=200, controls=("uniform",),
                 null_draws=3, scales=())


def _neurons(lm) -> NeuronsFile:
    return parse_neurons(synthetic_neurons(ratios=(0.02, 0.04), layers=len(lm.model.model.layers), per_layer=lm.model.config.intermediate_size))


def _run(lm, **kwargs):
    return evaluate_masking(lm, synthetic_split(3), synthetic_split(3, offset=10), _neurons(lm), PARAMS, 0.02, batch_size=4,
                            max_length=None, progress=False, workers=1, **kwargs, prompt_format="chat")


def _without_tokens(evaluation: dict) -> dict:
    """eval.json but the tokens computed (a chunk computes its prompt prefix again)."""
    out = {key: value for key, value in evaluation.items() if key != "tokens"}
    out["draw_null"] = {key: value for key, value in evaluation["draw_null"].items() if key != "tokens_computed"}
    return out


@pytest.fixture(scope="module")
def one_chunk(tiny_llama):
    return _run(tiny_llama)


def test_many_chunks_write_what_one_chunk_writes(tiny_llama, one_chunk, monkeypatch):
    """Every batch its own chunk (a budget of one byte): every score, prediction, effect and
    verdict the same; tokens computed more (the prefix and calibration rows once per chunk), the
    naive count the same."""
    monkeypatch.setattr(chunking, "CHUNK_BYTES", 1)
    evaluation, headline, _ = _run(tiny_llama)
    assert _without_tokens(evaluation) == _without_tokens(one_chunk[0]) and headline == one_chunk[1]
    assert evaluation["tokens"]["naive"] == one_chunk[0]["tokens"]["naive"]
    assert evaluation["tokens"]["computed"] > one_chunk[0]["tokens"]["computed"]
    assert evaluation["draw_null"]["tokens_computed"] > one_chunk[0]["draw_null"]["tokens_computed"]


class _Killed(Exception):
    pass


class _KilledAfter(ConditionSchedule):
    """A schedule whose process dies after `saves` saved runs (as a SIGKILL would, mid-run)."""

    def __init__(self, checkpoints: Checkpoints, saves: int) -> None:
        super().__init__(Ranks(), checkpoints)
        self.saves = saves

    def finished(self, chunk: int, index: int, run: tuple) -> None:
        if self.saves == 0:
            raise _Killed
        self.saves -= 1
        super().finished(chunk, index, run)


def test_a_killed_chunked_run_resumes_chunk_by_chunk(tiny_llama, one_chunk, monkeypatch, tmp_path, capsys):
    """Killed in its third chunk, the rerun restores the runs saved (the first two chunks whole:
    not run again) and writes what an uninterrupted run writes."""
    monkeypatch.setattr(chunking, "CHUNK_BYTES", 1)
    checkpoints = Checkpoints(tmp_path, "mask-eval", "k")
    masks = len(unique_masks(plan_conditions(_neurons(tiny_llama), PARAMS, 0.02, 4))) - 1
    with pytest.raises(_Killed):
        # Per chunk: the unmodified run, the masks, the draw-level null's draws.
        _run(tiny_llama, schedule=_KilledAfter(checkpoints, saves=2 * (2 + masks) + 3))
    saved = sorted(p.name for p in checkpoints.files())
    assert {"unmodified-chunk-0002.pt", "draw-null-chunk-0001.pt"} <= set(saved) and "draw-null-chunk-0002.pt" not in saved
    runs = []
    resumed = ConditionSchedule(Ranks(), checkpoints)
    original = resumed.finished
    resumed.finished = lambda chunk, index, run: (runs.append((chunk, index)), original(chunk, index, run))
    evaluation, headline, _ = _run(tiny_llama, schedule=resumed)
    assert _without_tokens(evaluation) == _without_tokens(one_chunk[0]) and headline == one_chunk[1]
    assert runs and min(chunk for chunk, _ in runs) == 2  # chunks 0 and 1 restored, not rerun
    # Chunks 0 and 1 whole, then chunk 2's unmodified run and two masks.
    assert f"resumes {2 * masks + 2} finished conditions x chunks (5 chunks" in capsys.readouterr().err
    assert torch.is_tensor(checkpoints.load_object("unmodified-chunk-0000.pt")["run"][1])
