"""The report layer's one error: a metrics file lacks what a figure or table needs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from emoneurons.errors import EmoneuronsError


class ReportDataError(EmoneuronsError, ValueError):
    """A metrics file lacks what a figure or table needs; the message names the file and key."""


@contextmanager
def metrics_keys_named() -> Iterator[None]:
    """A metrics file read as a plain dict (filter.json, count's meta.json, neurons.json's counts) that
    lacks a key the report reads: a ReportDataError naming the key, not a KeyError's traceback."""
    try:
        yield
    except KeyError as error:
        raise ReportDataError(f"a metrics file lacks the key {error} (see docs/CONTRACTS.md)") from None
