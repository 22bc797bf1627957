"""Checkpoints: keyed by what the outputs depend on, never reused across params or data, a bad
file is a warning and a fresh start; a count resumed from a checkpoint equals an uninterrupted one."""

from __future__ import annotations

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.neurons.counting import activation_counts
from emoneurons.runtime.checkpoint import Checkpoints, run_key
from emoneurons.runtime.distributed import Ranks
from emoneurons.runtime.resume import ConditionSchedule, CountSchedule, count_checkpoints
from helpers.repo_params import params_with


def _count_checkpoints(root, settings, train):
    return count_checkpoints(root, settings.model, settings.count, settings.eval.prompt_format, train)


DIALOGUES = [f"A: day {i} was {'very ' * (i % 5)}strange. B: tell me about day {i}." for i in range(30)]
EMOTION_OF = [EMOTIONS[i % 6] for i in range(30)]


def test_key_changes_with_params_values_and_input_bytes_not_checkpoint_every(tmp_path):
    train = tmp_path / "train.parquet"
    train.write_bytes(b"one")
    base = _count_checkpoints(tmp_path, params_with(), train).key
    assert _count_checkpoints(tmp_path, params_with({"count": {"checkpoint_every": 7}}), train).key == base
    assert _count_checkpoints(tmp_path, params_with({"count": {"positions": "last"}}), train).key != base
    assert _count_checkpoints(tmp_path, params_with({"model": {"id": "owner/other"}}), train).key != base
    train.write_bytes(b"two")
    assert _count_checkpoints(tmp_path, params_with(), train).key != base


def test_checkpoint_of_other_params_is_dropped_with_a_warning(tmp_path, capsys):
    old = Checkpoints(tmp_path, "count", run_key({"a": 1}, []))
    old.save_object("x.pt", {"v": 1})
    new = Checkpoints(tmp_path, "count", run_key({"a": 2}, []))
    new.drop_stale()
    assert not old.folder.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "from other params or data" in err[0]


def test_truncated_checkpoint_is_a_warning_and_a_fresh_start(tmp_path, capsys):
    store = Checkpoints(tmp_path, "count", "k")
    store.save_tensors("r.safetensors", {"counts": torch.ones(2, 6, 3, dtype=torch.int64)}, {"done": 1})
    data = (store.folder / "r.safetensors").read_bytes()
    (store.folder / "r.safetensors").write_bytes(data[: len(data) // 2])
    assert store.load_tensors("r.safetensors") is None
    store.save_object("condition-00000-chunk-0000.pt", {"index": 0, "rows": "k0", "run": [["anger"], torch.ones(3), 5]})
    assert store.load_object("condition-00000-chunk-0000.pt")["run"][2] == 5
    data = (store.folder / "condition-00000-chunk-0000.pt").read_bytes()
    (store.folder / "condition-00000-chunk-0000.pt").write_bytes(data[: len(data) // 2])
    assert store.load_object("condition-00000-chunk-0000.pt") is None
    assert ConditionSchedule(Ranks(), store).start(1, ["k0"]) == ([0], {})  # condition 0 is redone
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("checkpoint: ") for line in err)


def test_a_saved_condition_of_other_rows_is_redone(tmp_path, capsys):
    """mask-eval's runs are saved per chunk of the test dialogues with the key of its rows: a
    run saved for other rows (another chunking) is not taken for this chunk's."""
    store = Checkpoints(tmp_path, "mask-eval", "k")
    schedule = ConditionSchedule(Ranks(), store)
    assert schedule.start(2, ["rows-a", "rows-b"]) == ([0, 1], {})
    schedule.finished(1, 0, (["anger"], torch.ones(1, 6), 7))
    schedule.finished(1, -1, (["fear"], None, 3))
    mine, saved = ConditionSchedule(Ranks(), store).start(2, ["rows-a", "rows-b"])
    assert mine == [0, 1] and sorted(saved) == [(1, -1), (1, 0)] and saved[(1, 0)][2] == 7
    assert "resumes 1 finished conditions x chunks (2 chunks" in capsys.readouterr().err
    assert ConditionSchedule(Ranks(), store).start(2, ["rows-a", "rows-c"])[1] == {}


def test_count_resumed_from_a_checkpoint_equals_an_uninterrupted_count(tiny_llama, tmp_path, capsys):
    kwargs = dict(text="dialogue", positions="all", activation="gate", batch_size=4, max_length=64)
    expected = activation_counts(tiny_llama, DIALOGUES, EMOTION_OF, **kwargs)
    store = Checkpoints(tmp_path, "count", "k")
    first = CountSchedule(Ranks(), store, every=3)

    class Killed(Exception):
        pass

    def finished(*args, _original=first.finished):
        _original(*args)
        if first.done == 5:  # killed after batch 5: the last save was after batch 3
            raise Killed

    first.finished = finished
    try:
        activation_counts(tiny_llama, DIALOGUES, EMOTION_OF, schedule=first, **kwargs)
    except Killed:
        pass
    second = CountSchedule(Ranks(), store, every=3)
    f, T, _ = activation_counts(tiny_llama, DIALOGUES, EMOTION_OF, schedule=second, **kwargs)
    assert second.resumed == 3
    assert torch.equal(f, expected[0]) and torch.equal(T, expected[1])
    # a checkpoint of another batch layout (batch_size changed, same key) is not used
    third = CountSchedule(Ranks(), store, every=3)
    f, T, _ = activation_counts(tiny_llama, DIALOGUES, EMOTION_OF, schedule=third, batch_size=2, max_length=64, text="dialogue", positions="all", activation="gate")
    assert third.resumed == 0 and torch.equal(f, expected[0]) and torch.equal(T, expected[1])
    assert "does not match this run's batches" in capsys.readouterr().err


def test_count_from_a_truncated_checkpoint_warns_once_and_counts_afresh(tiny_llama, tmp_path, capsys):
    kwargs = dict(text="dialogue", positions="all", activation="gate", batch_size=4, max_length=64)
    expected = activation_counts(tiny_llama, DIALOGUES, EMOTION_OF, **kwargs)
    store = Checkpoints(tmp_path, "count", "k")
    saving = CountSchedule(Ranks(), store, every=2)
    activation_counts(tiny_llama, DIALOGUES, EMOTION_OF, schedule=saving, **kwargs)
    path = store.folder / saving.name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])  # the end of the counts is lost
    capsys.readouterr()
    fresh = CountSchedule(Ranks(), store, every=2)
    f, T, _ = activation_counts(tiny_llama, DIALOGUES, EMOTION_OF, schedule=fresh, **kwargs)
    assert fresh.resumed == 0 and torch.equal(f, expected[0]) and torch.equal(T, expected[1])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("checkpoint: ")]
    assert len(err) == 1 and "unreadable" in err[0] and "starting afresh" in err[0]


def test_checkpoint_every_must_be_positive_named_in_one_line():
    import pytest

    from emoneurons.params import ParamsError

    with pytest.raises(ParamsError, match=r"^params.yaml: count.checkpoint_every: .*greater than 0.*\(got 0\)$"):
        params_with({"count": {"checkpoint_every": 0}})
