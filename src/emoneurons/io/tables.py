"""Stage artifacts in and out: parquet tables and JSON, one-line errors on read, atomic writes.

A table of the paper's size (~300k dialogues, ~400 MB of text) is read and written a batch of
rows at a time by the stages that stream (`table_batches`, `table_writer`): memory is one batch
(and, reading, one of the file's row groups), not the table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

from emoneurons.emotions import EMOTIONS
from emoneurons.errors import EmoneuronsError
from emoneurons.io.atomic import atomic_path

# Rows a streaming stage holds at once (filter, split): ~10 MB of dialogue text at EmoPrism's
# ~1.2 KB a dialogue, a few hundred MB at most once a batch goes through the data checks.
BATCH_ROWS = 8192


class DataError(EmoneuronsError):
    """A data problem, said in one line that names the file."""


def label_column(table: pl.DataFrame | Sequence[str]) -> str:
    """The column holding a split table's emotion (a table, or its column names): the judges' `label`
    (filter's output), or the generator's intended `theme` where a table has no label (tests,
    EmoPrism-like tables)."""
    columns = table.columns if isinstance(table, pl.DataFrame) else table
    return "label" if "label" in columns else "theme"


def read_table(path: str | Path, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """Read a parquet table (only `columns`, when given: the rest is never read); raise DataError
    naming the file when it is missing, unreadable or lacks one of `columns`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if columns is not None:
            _require(path, pl.read_parquet_schema(path).keys(), columns)
        return pl.read_parquet(path, columns=list(columns) if columns is not None else None)
    except DataError:
        raise
    except Exception as error:  # polars raises several kinds for a bad file; all mean "unreadable"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{path}: not a readable parquet table ({first_line})") from None


def _require(path: Path, names: Iterable[str], columns: Iterable[str]) -> None:
    names = list(names)
    missing = [c for c in dict.fromkeys(columns) if c not in names]
    if missing:
        raise DataError(f"{path}: no column{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))} "
                        f"(has {', '.join(names) or 'none'})")


def read_json(path: str | Path) -> Any:
    """A JSON artifact of an upstream stage, or a DataError naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (run the upstream stages first)") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None


def _write_parquet(df: pl.DataFrame, path: Path) -> None:
    try:
        df.write_parquet(path)
    except pl.exceptions.PolarsError as error:
        # polars wraps a failed write ("underlying IO error: File too large (os error 27)"):
        # unwrapped into the OSError it was, so atomic_path reports it in one line.
        found = re.search(r"IO error: (.+?) \(os error (\d+)\)", str(error))
        if found is None:
            raise
        raise OSError(int(found.group(2)), found.group(1)) from None


def write_table(df: pl.DataFrame, path: str | Path) -> None:
    """Write a parquet table atomically: the file appears whole or not at all (a failed write is
    an atomic.OutputError naming `path`)."""
    with atomic_path(path) as tmp:
        _write_parquet(df, tmp)


def table_columns(path: str | Path) -> list[str]:
    """The column names of a parquet table, from its footer; DataError naming it."""
    import pyarrow.parquet as pq

    return list(_opened(Path(path), lambda p: pq.ParquetFile(p).schema_arrow.names))


def rows_at(path: str | Path, rows: Sequence[int], columns: Sequence[str]) -> pl.DataFrame:
    """Rows `rows` (indices, in that order) of a parquet table, only `columns`: one pass a batch at
    a time that holds only those rows; DataError naming the file as table_batches says, or an
    index past its end."""
    wanted = sorted(set(rows))
    found: list[pl.DataFrame] = []
    start = 0
    for batch in table_batches(path, columns=columns):
        inside = [row - start for row in wanted if start <= row < start + batch.height]
        if inside:
            found.append(batch[inside].with_columns(pl.Series("__row", [start + i for i in inside])))
        start += batch.height
    past = [row for row in wanted if row >= start]
    if past:
        raise DataError(f"{path}: no row {past[0]} (it has {start})")
    picked = pl.concat(found) if found else pl.DataFrame(schema={**{c: pl.String for c in columns}, "__row": pl.Int64})
    order = {row: i for i, row in enumerate(picked["__row"].to_list())}
    return picked[[order[row] for row in rows]].drop("__row")


def table_rows(path: str | Path) -> int:
    """The rows of a parquet table, from its footer (nothing else is read); DataError naming it."""
    import pyarrow.parquet as pq

    return _opened(Path(path), lambda p: pq.ParquetFile(p).metadata.num_rows)


def _opened(path: Path, read: Callable[[Path], Any]) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return read(path)
    except Exception as error:  # pyarrow raises several kinds for a bad file; all mean "unreadable"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{path}: not a readable parquet table ({first_line})") from None


def table_batches(path: str | Path, rows: int = BATCH_ROWS, columns: Sequence[str] | None = None,
                  required: Sequence[str] = (), start: int = 0, stop: int | None = None) -> Iterator[pl.DataFrame]:
    """A parquet table `rows` at a time, in file order (only `columns`, when given; only the rows
    [start, stop), reading only the row groups that hold them): memory is a batch and the row group
    being read, whatever the table's size. DataError naming the file when it is missing,
    unreadable or lacks one of `columns` or `required` (checked at the call, before any batch is read)."""
    import pyarrow.parquet as pq

    path = Path(path)
    handle = _opened(path, lambda p: pq.ParquetFile(p, buffer_size=1 << 20, pre_buffer=False))
    _require(path, handle.schema_arrow.names, [*required, *(columns or ())])
    meta = handle.metadata
    stop = meta.num_rows if stop is None else min(stop, meta.num_rows)
    groups, first, at = [], None, 0
    for group in range(meta.num_row_groups):
        size = meta.row_group(group).num_rows
        if at < stop and at + size > start:
            groups.append(group)
            first = at if first is None else first
        at += size
    if not groups:
        return iter(())
    batches = handle.iter_batches(batch_size=rows, row_groups=groups, columns=list(columns) if columns is not None else None)
    return _batches(path, batches, first - start, stop - start)


def _batches(path: Path, batches: Iterator[Any], at: int, stop: int) -> Iterator[pl.DataFrame]:
    """The batches' rows from position 0 to `stop`, counting rows from `at` (<= 0) at the first."""
    while at < stop:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as error:  # damage inside the file shows only when its pages are read
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DataError(f"{path}: not a readable parquet table ({first_line})") from None
        table = pl.from_arrow(batch)
        begin, end = max(-at, 0), min(stop - at, batch.num_rows)
        at += batch.num_rows
        if end > begin:
            yield table if (begin, end) == (0, batch.num_rows) else table.slice(begin, end - begin)  # type: ignore[union-attr]


@contextmanager
def table_writer(path: str | Path) -> Iterator[Callable[[pl.DataFrame], None]]:
    """A parquet table written a batch at a time, atomically: call the yielded function with each
    batch (one schema); the file appears whole when the block ends, never on an error. Empty
    batches add nothing (unless all are). One batch in all: the very file write_table writes;
    more: one row group per batch."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        first: list[pl.DataFrame] = []
        writer: list[pq.ParquetWriter] = []

        def write(batch: pl.DataFrame) -> None:
            if not writer and (not first or first[0].height == 0):
                first[:] = [batch]  # held until a second batch shows there are several
                return
            if batch.height == 0:
                return
            if not writer:
                table = first.pop().to_arrow()
                writer.append(pq.ParquetWriter(tmp, table.schema, compression="zstd"))
                writer[0].write_table(table)
            writer[0].write_table(batch.to_arrow().cast(writer[0].schema))

        try:
            yield write
        finally:
            if writer:
                writer[0].close()
        if not writer:
            if not first:
                raise ValueError(f"{path}: table_writer was given no batch")
            _write_parquet(first[0], tmp)


def read_counts(folder: str | Path):
    """f int64 [layers, neurons, 6] and T [6] of the count stage's counts.safetensors in `folder`;
    DataError naming the file when it is missing, unreadable, not that shape or an emotion has no
    counted tokens."""
    from safetensors import SafetensorError  # torch only when counts are read
    from safetensors.torch import load_file

    path = Path(folder) / "counts.safetensors"
    if not path.is_file():
        raise DataError(f"{path}: file not found (run the count stage)")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError) as error:
        raise DataError(f"{path}: not a readable safetensors file ({error})") from None
    if set(tensors) != {"f", "T"} or tensors["f"].dim() != 3:
        raise DataError(f"{path}: expected tensors f [layers, neurons, 6] and T [6], found {sorted(tensors)}")
    f, T = tensors["f"], tensors["T"]
    if f.shape[2] != len(EMOTIONS) or list(T.shape) != [len(EMOTIONS)]:
        raise DataError(f"{path}: f must be [layers, neurons, 6] and T [6], got {list(f.shape)} and {list(T.shape)}")
    # P = f/T, select's and the cards' starting point, needs every emotion counted.
    empty = [e for e, t in zip(EMOTIONS, T.tolist()) if t <= 0]
    if empty:
        raise DataError(f"{path}: no counted tokens for emotion(s) {', '.join(empty)}: P = f/T is undefined")
    return f, T
