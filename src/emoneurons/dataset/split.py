"""Stratified, seeded train/test split of the filtered dialogues (no dialogue in both parts).

At the paper's size the split never holds the table: the draw needs only the ids and emotions
(`held_out_ids`), and `TableSplit.write` writes both parts, sorted by id, from the table read a batch at
a time, through id-range buckets on disk (one pass to fill them, then one bucket at a time sorted
and appended): memory is a bucket and the ids, not the dialogues.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from emoneurons.io.artifacts import TEST, TRAIN
from emoneurons.io.tables import BATCH_ROWS, DataError, read_table, table_batches, table_writer


def held_out_count(n: int, test_fraction: float) -> int:
    """Test dialogues for an emotion with n dialogues: round(n * fraction), kept within [1, n - 1]."""
    return min(max(round(n * test_fraction), 1), n - 1)


def held_out_ids(df: pl.DataFrame, test_fraction: float, seed: int) -> pl.Series:
    """The ids drawn for test: per emotion (column `theme`) a seeded shuffle of its sorted ids."""
    missing = [c for c in ("id", "theme") if c not in df.columns]
    if missing:
        raise DataError(f"split: input lacks column(s) {', '.join(missing)} (has {', '.join(df.columns)})")
    if not 0 < test_fraction < 1:
        raise DataError(f"split: test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    drawn: list[pl.Series] = [pl.Series([], dtype=df.schema["id"])]
    for (theme,), group in df.select("theme", "id").partition_by("theme", as_dict=True, include_key=False).items():
        ids = group["id"].sort()
        if ids.len() < 2:
            raise DataError(
                f"split: emotion {theme!r} has {ids.len()} dialogue(s); at least 2 are needed "
                "to put it in both train and test"
            )
        # A string seed per emotion: the draw for one emotion does not depend on the others,
        # and Python seeds str deterministically (not via the randomised hash()). The positions
        # are shuffled, not the ids: the same permutation, without a Python string per dialogue.
        order = list(range(ids.len()))
        random.Random(f"{seed}/{theme}").shuffle(order)
        drawn.append(ids.gather(order[: held_out_count(ids.len(), test_fraction)]))
    return pl.concat(drawn)


def stratified_split(df: pl.DataFrame, test_fraction: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split per emotion (column `theme`) with a seeded shuffle; both parts sorted by id."""
    in_test = pl.col("id").is_in(held_out_ids(df, test_fraction, seed).implode())
    return df.filter(~in_test).sort("id"), df.filter(in_test).sort("id")


class TableSplit:
    """The split of a table (its path) drawn from its ids and emotions alone: `write` then writes
    both parts, holding `rows` rows of the table at a time. Reading and drawing happen at
    construction, so a bad input is an error before anything is written."""

    def __init__(self, table: Path, test_fraction: float, seed: int, rows: int = BATCH_ROWS) -> None:
        self.table, self.rows = table, rows
        self.keys = read_table(table, columns=["id", "theme"])
        self.in_test = pl.col("id").is_in(held_out_ids(self.keys, test_fraction, seed).implode())

    def write(self, folder: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
        """`folder`/train.parquet and test.parquet (each atomically), both sorted by id; the (id,
        theme) columns of each part, in that order."""
        with table_writer(TRAIN.at(folder)) as train, table_writer(TEST.at(folder)) as test:
            for part in _by_id(self.table, self.keys["id"], self.rows, folder / ".buckets"):
                train(part.filter(~self.in_test))
                test(part.filter(self.in_test))
        return self.keys.filter(~self.in_test).sort("id"), self.keys.filter(self.in_test).sort("id")


def _by_id(table: Path, ids: pl.Series, rows: int, scratch: Path) -> Iterator[pl.DataFrame]:
    """The table's rows sorted by id, in pieces of about `rows`: the table read once into buckets
    of consecutive id ranges (Arrow IPC files in `scratch`), then each bucket read back and sorted."""
    if ids.len() <= rows:  # one bucket: the table itself
        yield read_table(table).sort("id")
        return
    import pyarrow as pa

    bounds = ids.sort()[rows::rows]  # bucket k holds ids in [bounds[k-1], bounds[k])
    scratch.mkdir(parents=True, exist_ok=True)
    writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
    try:
        for batch in table_batches(table, rows):
            for (bucket,), part in batch.with_columns(_bucket=bounds.search_sorted(batch["id"], side="right")).partition_by(
                    "_bucket", as_dict=True, include_key=False).items():
                arrow = part.to_arrow()
                if bucket not in writers:
                    writers[bucket] = pa.ipc.new_stream(str(scratch / f"{bucket:06d}.arrow"), arrow.schema)
                writers[bucket].write_table(arrow)
        buckets = sorted(writers)
        while writers:
            writers.popitem()[1].close()
        for bucket in buckets:
            path = scratch / f"{bucket:06d}.arrow"
            yield pl.read_ipc_stream(path).sort("id")
            path.unlink()
    finally:
        while writers:
            writers.popitem()[1].close()
        shutil.rmtree(scratch, ignore_errors=True)
