"""Where a test runs: a skip that is a failure under CI, and the environment of a make of its own."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing_under_ci(reason: str) -> NoReturn:
    """A test whose real part cannot run on this machine (no browser, no way to make a read-only or
    full file system): a skip that says why here, a failure under CI=true, where it must run.
    `make test` lists every skip and its reason at the end (pytest -ra)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (a failure under CI=true, where this test must run)", pytrace=False)
    pytest.skip(f"{reason} (required under CI=true)")


def own_make_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a `make` a test runs as a make of its own, not a sub-make of `make test`
    (whose flags would carry over and whose exit lines would read "make[1]: ***")."""
    return {k: v for k, v in (os.environ if base is None else base).items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
