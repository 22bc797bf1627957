"""A pipeline record (a JSON file one stage writes and others read) checked as it is read: its
fields by kind, with one error, RecordError, naming the file and the key for a missing key or a
value of the wrong kind. The typed readers (eval_file, neurons_file, steer_file, cards_file) are
made of these checks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from emoneurons.emotions import EMOTIONS
from emoneurons.io.tables import DataError

KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object",
              list: "a list"}


class RecordError(DataError):
    """A record lacks a key or holds a value of the wrong kind, said in one line naming the file and the key."""


def is_kind(value: Any, kinds: tuple[type, ...]) -> bool:
    """`value` is one of `kinds` (JSON's: true is not a number, a number is not true)."""
    if bool in kinds:
        return isinstance(value, bool)
    return isinstance(value, kinds) and not isinstance(value, bool)


def field(record: Mapping[str, Any], key: str, kinds: tuple[type, ...], where: str, *, required: bool = False) -> Any:
    """record[key], of one of `kinds`; None when absent or null and not required."""
    value = record.get(key)
    if value is None:
        if required:
            raise RecordError(f"{where}: {key} is missing")
        return None
    if not is_kind(value, kinds):
        raise RecordError(f"{where}: {key}: {value!r} is not {' or '.join(KIND_NAMES[k] for k in kinds)}")
    return value


def json_text(text: str, source: str) -> Any:
    """The parsed JSON of a record's text (a file read at a git revision); RecordError naming
    `source` when it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(f"{source}: not valid JSON ({error.msg})") from None


def json_object(value: Any, where: str) -> Mapping[str, Any]:
    """`value` when it is a JSON object; RecordError naming `where` otherwise."""
    if not isinstance(value, Mapping):
        raise RecordError(f"{where}: not a JSON object")
    return value


def emotions_field(record: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """The record's required `emotions` object, each key one of EMOTIONS (RecordError naming `where`)."""
    emotions = field(record, "emotions", (dict,), where, required=True)
    for emotion in emotions:
        if emotion not in EMOTIONS:
            raise RecordError(f"{where}: emotions: {emotion!r}: allowed: {', '.join(EMOTIONS)}")
    return emotions
