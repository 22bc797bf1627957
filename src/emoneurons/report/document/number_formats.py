"""How the report writes numbers (parsed back by the tests: keep them plain); 'n/a' where missing."""

from __future__ import annotations

import math
from typing import Any


def pct(value: float, digits: int = 1) -> str:
    """0.8333 -> '83.3' (a share shown in percent); NaN -> 'n/a'."""
    return "n/a" if _missing(value) else f"{100 * value:.{digits}f}"


def pp(value: float, digits: int = 1) -> str:
    """A change already in percentage points, signed: '+2.5', '-3.0'."""
    return "n/a" if _missing(value) else f"{value:+.{digits}f}"


def count(value: Any) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def ci(low: float, high: float) -> str:
    return "n/a" if _missing(low) or _missing(high) else f"[{pct(low)}, {pct(high)}]"


def ci_plain(low: Any, high: Any) -> str:
    return "[n/a]" if _missing(low) or _missing(high) else f"[{float(low):.3f}, {float(high):.3f}]"


def number(value: Any, digits: int = 3) -> str:
    return "n/a" if _missing(value) else f"{float(value):.{digits}f}"


def p_value(value: Any) -> str:
    if _missing(value):
        return "n/a"
    return f"{float(value):.2g}" if float(value) < 0.001 else f"{float(value):.3f}"
