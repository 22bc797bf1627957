"""The report layer's one error: a metrics file lacks what a figure or table needs."""

from __future__ import annotations


class ReportDataError(ValueError):
    """A metrics file lacks what a figure or table needs; the message names the file and key."""
