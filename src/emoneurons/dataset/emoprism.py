"""The paper's released data set (EmoPrism) as the source of the filter stage instead of
augment/generate and our judges: records with `topic`, `dialogue`, `theme` (the emotion asked
for), one column per judge (the three LLMs' answers) and `label`.

Accepted as a JSON array of records, an object holding one such array, or JSON Lines, plain or
gzip-compressed (the co-author release ships `emoprism.json.gz`; gzip is told by its magic bytes,
not the file name). Every
key other than the known ones is taken as a judge column, unless `judge_columns` names them.
Dialogues get the same trivial repairs as generated ones (whitespace, turns run together on one
line); a record that is still not an A:/B: dialogue is an error, not a silent drop.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from emoneurons.io.tables import DataError
from emoneurons.io.suites import EXAMPLES
from emoneurons.text.dialogue_format import dialogue_table, parse_dialogue
from emoneurons.emotions import EMOTIONS, parse_emotion

BACKEND = "emoprism"
MODEL = "EmoPrism (Lee et al. 2025)"
REQUIRED = ("topic", "dialogue", "theme")
NOT_JUDGES = frozenset((*REQUIRED, "label", "id", "index"))


def _json_lines(path: Path, text: str, whole: json.JSONDecodeError) -> list[Any]:
    """The records of a JSON Lines file; when its first line is no JSON on its own the file was
    meant as one JSON document, and the error names where that document breaks (a truncated file)."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if not records:
                raise DataError(
                    f"{path}: not valid JSON at line {whole.lineno}, column {whole.colno}: {whole.msg} "
                    "(truncated? expected a JSON array of records or JSON Lines)"
                ) from None
            raise DataError(f"{path}: line {number}: not valid JSON ({error.msg}) in a JSON Lines file") from None
    return records


GZIP_MAGIC = b"\x1f\x8b"


def _text(path: Path) -> str:
    """The file's text, gunzipped first when its bytes start with gzip's magic number."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (filter.emoprism names the released EmoPrism JSON)") from None
    except OSError as error:
        raise DataError(f"{path}: unreadable ({error})") from None
    if raw.startswith(GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path}: a gzip file that does not decompress ({error}; truncated download?)") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text at byte {error.start} (expected JSON, plain or gzip-compressed)") from None


def _records(path: Path) -> list[dict[str, Any]]:
    text = _text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as whole:
        data = _json_lines(path, text, whole)
    if isinstance(data, dict):
        arrays = [v for v in data.values() if isinstance(v, list)]
        if len(arrays) != 1:
            raise DataError(f"{path}: a JSON object must hold exactly one array of records, found {len(arrays)}")
        data = arrays[0]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a list of records (objects with {', '.join(REQUIRED)}, judges, label)")
    if not data:
        raise DataError(f"{path}: 0 records")
    return data


def _each_valid(path: Path, column: str, values: list[Any], allowed: str) -> None:
    """DataError naming the first records whose value is None (invalid), if any."""
    bad = [i for i, value in enumerate(values) if value is None]
    if bad:
        shown = ", ".join(str(i) for i in bad[:EXAMPLES])
        records = f"record{'s' if len(bad) > 1 else ''} {shown}{' ...' if len(bad) > EXAMPLES else ''} ({len(bad)} in all)"
        raise DataError(f"{path}: {column!r} must be {allowed}; not so in {records}")


def _theme(value: Any) -> str | None:
    text = value.strip().lower() if isinstance(value, str) else ""
    return text if text in EMOTIONS else None


def _topic(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _label(value: Any) -> str | None:
    return parse_emotion(value) if isinstance(value, str) else None


@dataclass
class EmoPrism:
    dialogues: pl.DataFrame  # data/dialogues.parquet's columns
    judges: dict[str, list[str | None]]  # judge name -> label per dialogue (None: none of the six)
    label_not_theme: int  # records whose released `label` differs from `theme`


def read_emoprism(path: str | Path, judge_columns: Sequence[str] | None = None) -> EmoPrism:
    """The released records as dialogues and judge labels. DataError, one line naming the file,
    on bad input, before anything is written."""
    path = Path(path)
    records = _records(path)
    keys = list(dict.fromkeys(k for r in records for k in r))
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

    themes = [_theme(r.get("theme")) for r in records]
    _each_valid(path, "theme", themes, f"one of {', '.join(EMOTIONS)}")
    topics = [_topic(r.get("topic")) for r in records]
    _each_valid(path, "topic", topics, "a non-empty string")
    dialogues = [parse_dialogue(r["dialogue"]) if isinstance(r.get("dialogue"), str) else None for r in records]
    _each_valid(path, "dialogue", dialogues, "an A:/B: dialogue")

    # ids hash (topic, theme, k); k numbers the repeats of a pair in file order.
    seen: Counter[tuple[str, str]] = Counter()
    rows = []
    for topic, theme, dialogue in zip(topics, themes, dialogues):
        pair = (topic, theme)
        rows.append((*pair, seen[pair], dialogue))
        seen[pair] += 1
    labels = {name: [_label(r.get(column)) for r in records] for name, column in zip(names, judges)}
    differs = sum("label" in r and _label(r["label"]) != theme for r, theme in zip(records, themes))
    return EmoPrism(dialogue_table(rows, BACKEND, MODEL), labels, differs)  # type: ignore[arg-type]
