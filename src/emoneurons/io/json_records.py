"""The records of a JSON file, read one at a time: a JSON array of records, an object holding one
such array, or JSON Lines, plain or gzip-compressed (told by the file's magic bytes, not its name).

A 376 MB file is never held whole: the text is decoded in 1 MiB pieces and each record parsed
from them with the standard library's decoder (`json.JSONDecoder.raw_decode`), so memory stays one
record and one piece whatever the file's size. Any damage (a truncated download, a malformed
record, bytes that are not UTF-8) is a DataError in one line naming the file, the record's
position (its index and line) and, inside a record, the key whose value breaks.
"""

from __future__ import annotations

import codecs
import gzip
import json
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from emoneurons.io.tables import DataError

GZIP_MAGIC = b"\x1f\x8b"
PIECE = 1 << 20  # bytes decoded at a time
_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_SHAPES = "expected a JSON array of records or JSON Lines"


class _Text:
    """The file's text as a sliding window: `buf[pos:]` is what is not consumed yet."""

    def __init__(self, path: Path, raw: BinaryIO, progress: Callable[[int], None] | None) -> None:
        self.path, self.raw, self.progress = path, raw, progress
        head = raw.read(2)
        raw.seek(0)
        self.gzip = head == GZIP_MAGIC
        self.stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if self.gzip else raw  # type: ignore[assignment]
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf, self.pos, self.eof = "", 0, False
        self.bytes_decoded = 0  # uncompressed bytes turned into text so far
        self.lines_dropped = 0  # newlines in the text dropped from the window's start
        self.record = 0  # records read so far

    def more(self) -> bool:
        """Append the next piece to the window (dropping what was consumed); False at the end."""
        if self.eof:
            return False
        try:
            data = self.stream.read(PIECE)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{self.path}: a gzip file that does not decompress ({error}; truncated download?), "
                            f"{self.record} records read") from None
        try:
            text = self.decoder.decode(data, final=not data)
        except UnicodeDecodeError as error:
            raise DataError(f"{self.path}: not UTF-8 text at byte {self.bytes_decoded + error.start} "
                            "(expected JSON, plain or gzip-compressed)") from None
        self.bytes_decoded += len(data)
        if self.progress is not None:
            self.progress(self.raw.tell())
        if self.pos:
            self.lines_dropped += self.buf.count("\n", 0, self.pos)
            self.buf = self.buf[self.pos:]
            self.pos = 0
        self.buf += text
        self.eof = not data
        if self.bytes_decoded == len(data) and self.buf.startswith("\ufeff"):  # a byte-order mark
            self.buf = self.buf[1:]
        return bool(data) or bool(text)

    def ahead(self, n: int | None = None) -> None:
        """At least `n` characters (half a piece unless given; or the rest of the file) unconsumed in the window."""
        n = PIECE // 2 if n is None else n
        while len(self.buf) - self.pos < n and self.more():
            pass

    def skip_space(self) -> str:
        """The next character that is not whitespace ('' at the end), not consumed."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos:self.pos + 1]

    def line_col(self, index: int) -> tuple[int, int]:
        """1-based line and column of window position `index`."""
        line = self.lines_dropped + self.buf.count("\n", 0, index) + 1
        return line, index - (self.buf.rfind("\n", 0, index) + 1) + 1

    def value(self, what: Callable[[], str], json_lines: bool = False) -> Any:
        """The JSON value at the current position, consumed; `what()` names it in an error."""
        self.ahead()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as error:
                # The piece may end inside the value: read on, unless the damage lies well before the end.
                near_end = error.pos >= len(self.buf) - 16 or error.msg.startswith("Unterminated string")
                if not self.eof and near_end and self.more():
                    continue
                raise self._broken(error, what(), truncated=self.eof and near_end, json_lines=json_lines) from None
            self.pos = end
            return value

    def _broken(self, error: json.JSONDecodeError, what: str, truncated: bool, json_lines: bool) -> DataError:
        key = _key_at(self.buf, self.pos, error.pos)
        place = f"{what}, {key}" if key is not None else what
        line, column = self.line_col(error.pos)
        reason = f"{error.msg.removesuffix(' at')} at line {line}, column {column}"
        ending = " (truncated: the file ends inside it)" if truncated else ""
        kind = "not valid JSON in a JSON Lines file" if json_lines else "not valid JSON"
        return DataError(f"{self.path}: {place}: {kind}: {reason}{ending}")


def _key_at(text: str, start: int, bad: int) -> str | None:
    """Where in the object starting at `start` position `bad` lies: "key 'k'" inside the value of
    key k, "after key 'k'" in the punctuation after it; None before the first key."""
    if not text.startswith("{", start):
        return None
    pos, last = start + 1, None
    try:
        while pos <= bad:
            pos = _SPACE.match(text, pos).end()
            key, pos = _DECODER.raw_decode(text, pos)
            if not isinstance(key, str):
                return None
            pos = _SPACE.match(text, pos).end()
            if not text.startswith(":", pos) or bad <= pos:
                return f"after key {last!r}" if last is not None else None
            value_start = _SPACE.match(text, pos + 1).end()
            try:
                _, pos = _DECODER.raw_decode(text, value_start)
            except json.JSONDecodeError:
                return f"key {key!r}" if value_start <= bad else None
            if value_start <= bad < pos:
                return f"key {key!r}"
            last = key
            pos = _SPACE.match(text, pos).end()
            if bad <= pos or not text.startswith(",", pos):
                return f"after key {key!r}"
            pos += 1
    except json.JSONDecodeError:
        return f"after key {last!r}" if last is not None else None
    return None


class RecordReader:
    """One pass over a file's records: iterate it for (index, record) pairs. `progress(bytes)` is
    told how far into the file (its bytes on disk) the reading is."""

    def __init__(self, path: str | Path, progress: Callable[[int], None] | None = None) -> None:
        self.path = Path(path)
        self.progress = progress

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        try:
            raw = self.path.open("rb")
        except FileNotFoundError:
            raise DataError(f"{self.path}: file not found") from None
        except OSError as error:
            raise DataError(f"{self.path}: unreadable ({error.strerror or error})") from None
        with raw:
            text = _Text(self.path, raw, self.progress)
            first = text.skip_space()
            if first == "[":
                yield from _array(text, 0)
                _end(text, "after the array of records")
            elif first == "{":
                yield from _object_or_lines(text)
            elif first == "":
                raise DataError(f"{self.path}: empty ({_SHAPES})")
            else:
                line, column = text.line_col(text.pos)
                raise DataError(f"{self.path}: not valid JSON at line {line}, column {column}: {_SHAPES}")


def _array(text: _Text, index: int) -> Iterator[tuple[int, Any]]:
    """The elements of the array whose '[' is at the current position, numbered from `index`."""
    text.pos += 1
    if text.skip_space() == "]":
        text.pos += 1
        return
    while True:
        yield index, text.value(lambda: f"record {index} (from line {text.line_col(text.pos)[0]})")
        index += 1
        text.record = index
        following = text.skip_space()
        if following == ",":
            text.pos += 1
            text.skip_space()
        elif following == "]":
            text.pos += 1
            return
        else:
            line, column = text.line_col(text.pos)
            ending = "the file ends (truncated)" if following == "" else f"found {following!r}"
            raise DataError(f"{text.path}: after record {index - 1}: expected ',' or ']' at line {line}, column {column}, {ending}")


def _end(text: _Text, where: str) -> None:
    if text.skip_space() != "":
        line, column = text.line_col(text.pos)
        raise DataError(f"{text.path}: more text {where} at line {line}, column {column} ({_SHAPES})")


def _object_or_lines(text: _Text) -> Iterator[tuple[int, Any]]:
    """A top-level object: one that holds the array of records (its other members are skipped),
    or the first record of a JSON Lines file."""
    line = text.line_col(text.pos)[0]
    text.pos += 1
    members: dict[str, Any] = {}
    arrays = 0
    if text.skip_space() == "}":
        text.pos += 1
    else:
        while True:
            key = text.value(lambda: f"the object at line {line}")
            if not isinstance(key, str) or text.skip_space() != ":":
                line, column = text.line_col(text.pos)
                raise DataError(f"{text.path}: not valid JSON at line {line}, column {column}: expected \"key\": value ({_SHAPES})")
            text.pos += 1
            if text.skip_space() == "[" and _holds_objects(text):
                arrays += 1
                if arrays > 1:
                    raise DataError(f"{text.path}: a JSON object must hold exactly one array of records, found {arrays}")
                yield from _array(text, 0)
            else:
                members[key] = text.value(lambda: f"key {key!r} of the object at line {line}")
            following = text.skip_space()
            text.pos += 1
            if following == "}":
                break
            if following != ",":
                line, column = text.line_col(text.pos - 1)
                raise DataError(f"{text.path}: not valid JSON at line {line}, column {column}: expected ',' or '}}' ({_SHAPES})")
            text.skip_space()
    if arrays:
        _end(text, "after the object holding the records")
        return
    if text.skip_space() == "":  # one object and nothing else: not a file of records
        raise DataError(f"{text.path}: a JSON object must hold exactly one array of records, found 0")
    # More values follow the first object: JSON Lines, the first object its first record.
    yield 0, members
    index = 1
    while text.skip_space() != "":
        yield index, text.value(lambda: f"record {index} (line {text.line_col(text.pos)[0]})", json_lines=True)
        index += 1
        text.record = index


def _holds_objects(text: _Text) -> bool:
    """Whether the array at the current position starts with an object (or is empty): the records."""
    ahead = 16
    while True:
        text.ahead(ahead)
        first = _SPACE.match(text.buf, text.pos + 1).end()
        if first < len(text.buf) or text.eof:
            return text.buf[first:first + 1] in ("{", "]")
        ahead *= 2
