"""Stage artifacts in and out: parquet tables and JSON, one-line errors on read, atomic writes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from emoneurons.io.atomic import atomic_path


class DataError(Exception):
    """A data problem, said in one line that names the file."""


def label_column(table: pl.DataFrame) -> str:
    """The column holding a split table's emotion: the judges' `label` (filter's output), or the
    generator's intended `theme` where a table has no label (tests, EmoPrism-like tables)."""
    return "label" if "label" in table.columns else "theme"


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a parquet table; raise DataError naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return pl.read_parquet(path)
    except Exception as error:  # polars raises several kinds for a bad file; all mean "unreadable"
        raise DataError(f"{path}: not a readable parquet table ({_first_line(error)})") from None


# Rows per slice where a table is read a slice at a time: a slice of EmoPrism's dialogues (~1 KB
# each) is ~16 MB, whatever the table's height.
SLICE_ROWS = 16_384


class ScannedTable:
    """A table read a slice, a column or a few rows at a time, never whole: what a stage holds of
    it does not grow with its height (the train split at EmoPrism's volume is 273k dialogues).
    `name` (the file's path) names it in the one-line DataError of a read that fails."""

    def __init__(self, frame: pl.LazyFrame | pl.DataFrame, name: str) -> None:
        self.frame, self.name = frame.lazy(), name
        try:
            self.columns: list[str] = self.frame.collect_schema().names()
            self.height: int = self.frame.select(pl.len()).collect().item()
        except Exception as error:  # polars raises several kinds for a bad file; all mean "unreadable"
            raise DataError(f"{name}: not a readable parquet table ({_first_line(error)})") from None

    def _collect(self, frame: pl.LazyFrame) -> pl.DataFrame:
        try:
            return frame.collect()
        except Exception as error:
            raise DataError(f"{self.name}: not a readable parquet table ({_first_line(error)})") from None

    def slices(self, *columns: str | pl.Expr, rows: int = SLICE_ROWS) -> Iterator[pl.DataFrame]:
        """`columns` of `rows` rows at a time, in the table's order."""
        for start in range(0, self.height, rows):
            yield self._collect(self.frame.slice(start, rows).select(*columns))

    def column(self, column: str | pl.Expr) -> pl.Series:
        """One column (or expression of the columns) of every row, computed a slice at a time."""
        parts = [part.to_series() for part in self.slices(column)]
        return pl.concat(parts) if parts else self._collect(self.frame.select(column)).to_series()

    def values_at(self, column: str, rows: Sequence[int]) -> list[Any]:
        """`column`'s values at row indices `rows`, in that order (each row read alone: for a few)."""
        return [self._collect(self.frame.slice(int(row), 1).select(column)).item() for row in rows]


def scan_table(path: str | Path) -> ScannedTable:
    """A parquet table to read a slice at a time; DataError naming the file when it is missing or
    unreadable (its schema and height are read now)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pl.scan_parquet(path)
    except Exception as error:
        raise DataError(f"{path}: not a readable parquet table ({_first_line(error)})") from None
    return ScannedTable(frame, str(path))


def read_json(path: str | Path) -> Any:
    """A JSON artifact of an upstream stage, or a DataError naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (run the upstream stages first)") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None


def write_table(df: pl.DataFrame, path: str | Path) -> None:
    """Write a parquet table atomically: the file appears whole or not at all (a failed write is
    an atomic.OutputError naming `path`)."""
    with atomic_path(path) as tmp:
        try:
            df.write_parquet(tmp)
        except pl.exceptions.PolarsError as error:
            # polars wraps a failed write ("underlying IO error: File too large (os error 27)"):
            # unwrapped into the OSError it was, so atomic_path reports it in one line.
            found = re.search(r"IO error: (.+?) \(os error (\d+)\)", str(error))
            if found is None:
                raise
            raise OSError(int(found.group(2)), found.group(1)) from None


def read_counts(folder: str | Path):
    """f int64 [layers, neurons, 6] and T [6] of the count stage's counts.safetensors in `folder`;
    DataError naming the file when it is missing, unreadable or not that shape."""
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
    return tensors["f"], tensors["T"]
