"""Stratified, seeded train/test split of the filtered dialogues (no dialogue in both parts)."""

from __future__ import annotations

import random

import polars as pl

from emoneurons.io.tables import DataError


def held_out_count(n: int, test_fraction: float) -> int:
    """Test dialogues for an emotion with n dialogues: round(n * fraction), kept within [1, n - 1]."""
    return min(max(round(n * test_fraction), 1), n - 1)


def stratified_split(df: pl.DataFrame, test_fraction: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split per emotion (column `theme`) with a seeded shuffle; both parts sorted by id."""
    missing = [c for c in ("id", "theme") if c not in df.columns]
    if missing:
        raise DataError(f"split: input lacks column(s) {', '.join(missing)} (has {', '.join(df.columns)})")
    if not 0 < test_fraction < 1:
        raise DataError(f"split: test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    test_ids: list[str] = []
    for theme, ids in df.group_by("theme").agg(pl.col("id").sort()).sort("theme").iter_rows():
        if len(ids) < 2:
            raise DataError(
                f"split: emotion {theme!r} has {len(ids)} dialogue(s); at least 2 are needed "
                "to put it in both train and test"
            )
        # A string seed per emotion: the draw for one emotion does not depend on the others,
        # and Python seeds str deterministically (not via the randomised hash()).
        random.Random(f"{seed}/{theme}").shuffle(ids)
        test_ids.extend(ids[: held_out_count(len(ids), test_fraction)])
    in_test = pl.col("id").is_in(pl.Series(test_ids, dtype=df.schema["id"]).implode())
    return df.filter(~in_test).sort("id"), df.filter(in_test).sort("id")
