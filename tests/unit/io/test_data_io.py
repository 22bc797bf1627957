"""Parquet io: round trip, one-line errors naming the file, atomic writes."""

from __future__ import annotations

import polars as pl
import pytest

from emoneurons.io.tables import DataError, read_table, write_table


def _frame() -> pl.DataFrame:
    return pl.DataFrame({"id": ["b", "a"], "n_agree": [2, 3], "judge_x": ["anger", None]})


def test_round_trip_keeps_values_and_dtypes(tmp_path):
    path = tmp_path / "sub" / "table.parquet"
    write_table(_frame(), path)
    back = read_table(path)
    assert back.equals(_frame())
    assert back.schema == _frame().schema
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.parquet"]  # no temp left


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nope.parquet"
    with pytest.raises(DataError) as error:
        read_table(path)
    assert str(path) in str(error.value)
    assert "not found" in str(error.value)


def test_unreadable_file_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_text("this is not parquet\nsecond line\n")
    with pytest.raises(DataError) as error:
        read_table(path)
    message = str(error.value)
    assert message.startswith(f"{path}: not a readable parquet table")
    assert "\n" not in message


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "table.parquet"
    write_table(_frame(), path)

    def broken(self, file, *args, **kwargs):
        open(file, "wb").write(b"half")  # a partial write, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", broken)
    with pytest.raises(OSError):
        write_table(pl.DataFrame({"id": ["z"]}), path)
    monkeypatch.undo()
    assert read_table(path).equals(_frame())
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


@pytest.mark.parametrize(("f_shape", "T", "message"), [
    ((2, 3, 6), [4, 5, 6, 7, 8, 0], r"counts\.safetensors: no counted tokens for emotion\(s\) surprise: P = f/T is undefined$"),
    ((2, 3, 5), [4, 5, 6, 7, 8, 9], r"counts\.safetensors: f must be \[layers, neurons, 6\] and T \[6\], got \[2, 3, 5\]"),
])
def test_counts_select_cannot_use_are_one_line_naming_the_file(tmp_path, f_shape, T, message):
    import torch
    from safetensors.torch import save_file

    from emoneurons.io.tables import read_counts

    save_file({"f": torch.zeros(f_shape, dtype=torch.int64), "T": torch.tensor(T)}, tmp_path / "counts.safetensors")
    with pytest.raises(DataError, match=message):
        read_counts(tmp_path)
