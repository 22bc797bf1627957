"""count's input at any size (neurons/count_inputs.py): the train split read a row group at a time,
tokenized a piece at a time into a token store on disk, batches made from the stored lengths; the
counts equal those of the dialogues given as lists, and a resumed count reads its tokens back."""

from __future__ import annotations

import polars as pl
import pyarrow.parquet as pq
import pytest
import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.io.tables import DataError
from emoneurons.neurons import count_inputs, counting
from emoneurons.neurons.count_inputs import ParquetDialogues, TokenStore
from emoneurons.neurons.counting import activation_counts, count_dialogues, counting_inputs
from emoneurons.runtime.checkpoint import Checkpoints
from emoneurons.runtime.distributed import Ranks
from emoneurons.runtime.resume import CountSchedule

DIALOGUES = [f"A: day {i} was {'very ' * (i % 7)}strange and I was furious.\nB: tell me about day {i}, it sounds scary."
             for i in range(40)] + [""]  # the empty one has no tokens to count
EMOTION_OF = [EMOTIONS[i % 6] for i in range(41)]


def _train(tmp_path, dialogues=DIALOGUES, themes=EMOTION_OF):
    """The train split as a parquet of small row groups (7 rows), so reading it crosses them."""
    path = tmp_path / "train.parquet"
    pq.write_table(pl.DataFrame({"id": [f"d{i}" for i in range(len(dialogues))], "theme": themes,
                                 "dialogue": dialogues}).to_arrow(), path, row_group_size=7)
    return path


@pytest.mark.parametrize("options", [dict(max_length=24), dict(max_length=20, text="prompt", positions="last", prompt_format="chat"),
                                     dict(max_length=40, skip_cues={"furious", "scary"})],
                         ids=["cut to 24", "prompt, last", "skip cues"])
def test_counts_from_the_split_read_in_pieces_equal_counts_from_lists(tiny_llama, tmp_path, monkeypatch, options):
    monkeypatch.setattr(count_inputs, "PIECE_ROWS", 3)  # pieces that end inside the row groups
    monkeypatch.setattr(counting, "PIECE_CHARS", 150)  # tokenized one or two dialogues at a time
    if options.get("text") == "prompt":  # room for the prompt's prefix and 20 tokens of each dialogue
        options = {**options, "max_length": len(counting.count_prefix(tiny_llama.tokenizer, "prompt", "chat")) + 20}
    kwargs = {"text": "dialogue", "positions": "all", "activation": "gate", "batch_size": 4, "max_length": 1024, **options}
    expected = activation_counts(tiny_llama, DIALOGUES, EMOTION_OF, **kwargs)
    f, T, cut_pieces = count_dialogues(tiny_llama, ParquetDialogues(_train(tmp_path)), **kwargs)
    assert torch.equal(f, expected[0]) and torch.equal(T, expected[1]) and int(T.sum()) > 0
    # what model.max_length cut, from the stored lengths: what counting_inputs says tokenizing everything at once
    items, whole = counting_inputs(tiny_llama.tokenizer, DIALOGUES, EMOTION_OF, max_length=kwargs["max_length"],
                                   text=options.get("text", "dialogue"), positions=options.get("positions", "all"),
                                   prompt_format=options.get("prompt_format"))
    assert cut_pieces == expected.truncation == whole
    assert whole.dialogues > 0  # some were cut


def test_a_resumed_count_reads_its_tokens_back_instead_of_tokenizing(tiny_llama, tmp_path, monkeypatch):
    kwargs = dict(text="dialogue", positions="all", activation="gate", batch_size=4, max_length=20)
    train = ParquetDialogues(_train(tmp_path))
    expected = count_dialogues(tiny_llama, train, **kwargs)
    store = Checkpoints(tmp_path / "ck", "count", "k")
    first = CountSchedule(Ranks(), store, every=2)

    class Killed(Exception):
        pass

    def finished(*args, _original=first.finished):
        _original(*args)
        if first.done == 5:
            raise Killed

    first.finished = finished
    with pytest.raises(Killed):
        count_dialogues(tiny_llama, train, schedule=first, **kwargs)
    assert sorted(p.name for p in store.folder.iterdir() if "tokens" in p.name) == [
        "tokens-rank0-of-1.cues", "tokens-rank0-of-1.ids", "tokens-rank0-of-1.index.npz"]

    def no_tokenizing(*args, **kw):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(counting, "encode_dialogues", no_tokenizing)
    second = CountSchedule(Ranks(), store, every=2)
    f, T, _ = count_dialogues(tiny_llama, train, schedule=second, **kwargs)
    assert second.resumed == 4 and torch.equal(f, expected[0]) and torch.equal(T, expected[1])
    # other params under the same key (a test's shortcut; the stage's key holds model.max_length): the
    # store's recipe differs and it is rebuilt (the partial counts, of other batches, go too)
    monkeypatch.undo()
    (store.folder / first.name).unlink()
    third = CountSchedule(Ranks(), store, every=2)
    f, T, _ = count_dialogues(tiny_llama, train, schedule=third, batch_size=4, max_length=64, text="dialogue", positions="all", activation="gate")
    assert torch.equal(f, count_dialogues(tiny_llama, train, batch_size=4, max_length=64, text="dialogue", positions="all", activation="gate")[0])


def test_a_store_cut_short_or_of_another_recipe_is_not_read(tmp_path):
    store = TokenStore(tmp_path, "t", {"budget": 5, "skip_cues": True}, rows=3)
    store.reset()
    store.add([(2, [7, 8, 9], 4, [1]), (0, [5], 1, [])])
    store.save()
    again = TokenStore(tmp_path, "t", {"budget": 5, "skip_cues": True}, rows=3)
    assert again.load() and again.full.tolist() == [1, 0, 4] and again.offset.tolist() == [3, -1, 0]
    with again.reader() as stored:
        assert stored.get(2) == ([7, 8, 9], [1]) and stored.get(0) == ([5], [])
        with pytest.raises(KeyError, match="dialogue 1 is not in the token store"):
            stored.get(1)
    assert not TokenStore(tmp_path, "t", {"budget": 6, "skip_cues": True}, rows=3).load()
    assert not TokenStore(tmp_path, "t", {"budget": 5, "skip_cues": True}, rows=4).load()
    (tmp_path / "t.ids").write_bytes((tmp_path / "t.ids").read_bytes()[:-4])  # a kill while appending
    assert not TokenStore(tmp_path, "t", {"budget": 5, "skip_cues": True}, rows=3).load()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop("dialogue"), r"train\.parquet: no column 'dialogue' \(has id, theme\)"),
        (lambda df: df.with_columns(theme=pl.lit("joy")), r"train\.parquet: column 'theme': unknown emotion 'joy'; allowed: anger, "),
        (lambda df: df.filter(pl.col("theme") != "fear"), r"train\.parquet: no dialogues for emotion\(s\) fear: every emotion needs tokens"),
    ],
)
def test_a_bad_train_split_is_one_line_before_any_work(tmp_path, change, message):
    path = _train(tmp_path)
    change(pl.read_parquet(path)).write_parquet(path)
    with pytest.raises(DataError, match=message):
        ParquetDialogues(path)
