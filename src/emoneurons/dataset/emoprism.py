"""The paper's released data set (EmoPrism) as the source of the filter stage instead of
augment/generate and our judges: records with `topic`, `dialogue`, `theme` (the emotion asked
for), one column per judge (the three LLMs' answers) and `label`.

Accepted as a JSON array of records, an object holding one such array, or JSON Lines, plain or
gzip-compressed (the co-author release ships `emoprism.json.gz`; gzip is told by its magic bytes,
not the file name). Every
key other than the known ones is taken as a judge column, unless `judge_columns` names them.
Dialogues get the same trivial repairs as generated ones (whitespace, turns run together on one
line); a record that is still not an A:/B: dialogue is an error, not a silent drop.

The file is read twice, a record at a time (io/json_records.py), never whole: `read_emoprism` checks
every record and learns the judge columns (the keys of all records), so bad input is one line
before any work; `EmoPrism.batches` then gives the records as tables of a bounded number of rows.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from tqdm import tqdm

from emoneurons.emotions import EMOTIONS, parse_emotion
from emoneurons.io.json_records import RecordReader
from emoneurons.io.suites import EXAMPLES
from emoneurons.io.tables import DataError
from emoneurons.text.dialogue_format import dialogue_table, parse_dialogue

BACKEND = "emoprism"
MODEL = "EmoPrism (Lee et al. 2025)"
REQUIRED = ("topic", "dialogue", "theme")
NOT_JUDGES = frozenset((*REQUIRED, "label", "id", "index"))
RECORDS = f"expected a list of records (objects with {', '.join(REQUIRED)}, judges, label)"


def _theme(value: Any) -> str | None:
    text = value.strip().lower() if isinstance(value, str) else ""
    return text if text in EMOTIONS else None


def _topic(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _label(value: Any) -> str | None:
    return parse_emotion(value) if isinstance(value, str) else None


def _dialogue(value: Any) -> str | None:
    return parse_dialogue(value) if isinstance(value, str) else None


@dataclass
class _Invalid:
    """The records whose value of one key is invalid: the first few and how many."""

    first: list[int] = field(default_factory=list)
    count: int = 0

    def add(self, index: int) -> None:
        self.count += 1
        if len(self.first) <= EXAMPLES:
            self.first.append(index)

    def check(self, path: Path, column: str, allowed: str) -> None:
        """DataError naming the first records whose value is invalid, if any."""
        if self.count:
            shown = ", ".join(str(i) for i in self.first[:EXAMPLES])
            more = " ..." if self.count > EXAMPLES else ""
            records = f"record{'s' if self.count > 1 else ''} {shown}{more} ({self.count} in all)"
            raise DataError(f"{path}: {column!r} must be {allowed}; not so in {records}")


@dataclass(frozen=True)
class EmoPrism:
    """A checked EmoPrism file: its judge columns, their names, and how many records."""

    path: Path
    judge_columns: tuple[str, ...]  # the file's keys holding the judges' answers
    judges: tuple[str, ...]  # their names (the filter's judge_<name> columns)
    records: int
    label_not_theme: int  # records whose released `label` differs from `theme`
    repaired: bytes  # per record 1 when its dialogue needed repairs (the rest are taken as they are)

    def batches(self, rows: int) -> Iterator[tuple[pl.DataFrame, dict[str, list[str | None]]]]:
        """The records in file order, `rows` at a time: data/dialogues.parquet's columns and each
        judge's label per dialogue (None: none of the six)."""
        seen: Counter[tuple[str, str]] = Counter()  # ids hash (topic, theme, k); k numbers a pair's repeats in file order
        table: list[tuple[str, str, int, str]] = []
        labels: dict[str, list[str | None]] = {name: [] for name in self.judges}
        for index, record in RecordReader(self.path):
            pair = (_topic(record.get("topic")), _theme(record.get("theme")))
            text = record["dialogue"]
            table.append((*pair, seen[pair], parse_dialogue(text) if self.repaired[index] else text))  # type: ignore[arg-type]
            seen[pair] += 1
            for name, column in zip(self.judges, self.judge_columns):
                labels[name].append(_label(record.get(column)))
            if len(table) == rows:
                yield dialogue_table(table, BACKEND, MODEL), labels
                table, labels = [], {name: [] for name in self.judges}
        if table:
            yield dialogue_table(table, BACKEND, MODEL), labels

    def table(self) -> tuple[pl.DataFrame, dict[str, list[str | None]]]:
        """The whole file as one table and its labels (for small files: it holds every record)."""
        parts = list(self.batches(max(self.records, 1)))
        return parts[0] if parts else (dialogue_table([], BACKEND, MODEL), {name: [] for name in self.judges})


def read_emoprism(path: str | Path, judge_columns: Sequence[str] | None = None, desc: str | None = None) -> EmoPrism:
    """Check every record of the released file, one at a time, and learn its judge columns.
    DataError, one line naming the file (and the record), on bad input, before anything is
    written. `desc`: show the reading's progress (bytes of the file, an ETA) under that name."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (filter.emoprism names the released EmoPrism JSON)")
    # Shown on a terminal only (tqdm's disable=None): a log or a test's pipe gets the one-line error alone.
    with tqdm(total=path.stat().st_size, desc=desc, unit="B", unit_scale=True, disable=None if desc else True) as progress:
        return _checked(path, judge_columns, lambda done: progress.update(done - progress.n))


def _checked(path: Path, judge_columns: Sequence[str] | None, progress: Callable[[int], None]) -> EmoPrism:
    keys: dict[str, None] = {}
    invalid = {column: _Invalid() for column in ("theme", "topic", "dialogue")}
    repaired = bytearray()
    records = differs = 0
    for index, record in RecordReader(path, progress):
        if not isinstance(record, dict):
            raise DataError(f"{path}: record {index} is a {type(record).__name__}: {RECORDS}")
        keys.update(dict.fromkeys(record))
        theme = _theme(record.get("theme"))
        if theme is None:
            invalid["theme"].add(index)
        if _topic(record.get("topic")) is None:
            invalid["topic"].add(index)
        text = record.get("dialogue")
        dialogue = _dialogue(text)
        if dialogue is None:
            invalid["dialogue"].add(index)
        repaired.append(dialogue is not None and dialogue != text)
        differs += "label" in record and _label(record["label"]) != theme
        records += 1
    if not records:
        raise DataError(f"{path}: 0 records")
    missing = [k for k in REQUIRED if k not in keys]
    if missing:
        raise DataError(f"{path}: no key {', '.join(map(repr, missing))} in the records (has {', '.join(keys)})")
    judges = list(judge_columns) if judge_columns else [k for k in keys if k not in NOT_JUDGES]
    unknown = [k for k in judges if k not in keys]
    if unknown:
        raise DataError(f"{path}: judge column(s) {', '.join(map(repr, unknown))} not in the records (has {', '.join(keys)})")
    if not judges:
        raise DataError(f"{path}: no judge columns (keys other than {', '.join(sorted(NOT_JUDGES))}); has {', '.join(keys)}")
    names = [re.sub(r"[^a-z0-9_]+", "_", k.lower()).strip("_") or "judge" for k in judges]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: judge columns {judges} collide as judge names {names}")
    invalid["theme"].check(path, "theme", f"one of {', '.join(EMOTIONS)}")
    invalid["topic"].check(path, "topic", "a non-empty string")
    invalid["dialogue"].check(path, "dialogue", "an A:/B: dialogue")
    return EmoPrism(path, tuple(judges), tuple(names), records, differs, bytes(repaired))
