"""filter: keep a dialogue when at least `min_agree` of its labels (the intended emotion plus each
judge's) equal the intended emotion (paper, B.3), and report Table 1 and judge agreement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import polars as pl

from emoneurons.io.tables import DataError
from emoneurons.emotions import EMOTIONS
from emoneurons.stats.metrics import CHANCE, exact_binomial_ci


def cohen_kappa(a: Sequence[str | None], b: Sequence[str | None]) -> float | None:
    """Cohen's kappa of two raters over the items both labelled; None when undefined (no such
    items, or chance agreement of 1)."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(x == y for x, y in pairs) / n
    categories = {x for pair in pairs for x in pair}
    expected = sum(
        (sum(x == c for x, _ in pairs) / n) * (sum(y == c for _, y in pairs) / n) for c in categories
    )
    return None if expected == 1 else (observed - expected) / (1 - expected)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from an items x categories table of how many raters chose each category
    (every item rated by the same number of raters, at least two); None when undefined."""
    if not counts:
        return None
    raters = sum(counts[0])
    if raters < 2 or any(sum(row) != raters for row in counts):
        raise ValueError("fleiss_kappa: every item needs the same number (>= 2) of ratings")
    n_items = len(counts)
    per_item = [(sum(c * c for c in row) - raters) / (raters * (raters - 1)) for row in counts]
    observed = sum(per_item) / n_items
    shares = [sum(row[j] for row in counts) / (n_items * raters) for j in range(len(counts[0]))]
    expected = sum(p * p for p in shares)
    return None if expected == 1 else (observed - expected) / (1 - expected)


def fleiss_kappa_of_labels(labels: Sequence[Sequence[str | None]]) -> float | None:
    """Fleiss' kappa of several raters' label lists, over the items every rater labelled."""
    if len(labels) < 2:
        return None
    items = [column for column in zip(*labels, strict=True) if all(x is not None for x in column)]
    counts = [[column.count(e) for e in EMOTIONS] for column in items]
    return fleiss_kappa(counts)


def judge_chance(themes: Sequence[str]) -> float:
    """The agreement a judge without information reaches: the better of guessing (1/6) and always
    answering the most frequent intended emotion."""
    if not themes:
        return CHANCE
    return max(CHANCE, max(themes.count(e) for e in set(themes)) / len(themes))


def judges_at_chance(agreements: Mapping[str, tuple[float, float]], chance: float) -> list[str]:
    """The judges whose agreement's 95% interval reaches down to chance: not shown to filter."""
    return [name for name, (low, _) in agreements.items() if not low > chance]


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def agreement_filter(
    df: pl.DataFrame, labels: Mapping[str, Sequence[str | None]], min_agree: int
) -> tuple[pl.DataFrame, dict]:
    """The dialogues with n_agree >= min_agree, with judge_<name>, n_agree and label columns, and
    the reports/filter.json report. DataError with the numbers when nothing is kept."""
    generated = df.height
    for name, judged in labels.items():
        if len(judged) != generated:
            raise ValueError(f"judge {name!r}: {len(judged)} labels for {generated} dialogues")
    judge_columns = {f"judge_{name}": pl.Series(f"judge_{name}", list(judged), dtype=pl.String) for name, judged in labels.items()}
    agree = pl.lit(1, dtype=pl.Int64)  # the intended emotion agrees with itself
    for column in judge_columns:
        agree = agree + (pl.col(column) == pl.col("theme")).fill_null(False).cast(pl.Int64)
    labelled = (
        df.with_columns(*judge_columns.values())
        .with_columns(agree.alias("n_agree"), pl.col("theme").alias("label"))
    )
    kept = labelled.filter(pl.col("n_agree") >= min_agree)

    themes = df["theme"].to_list()
    agreement = {
        name: _rounded(sum(x == t for x, t in zip(judged, themes)) / generated if generated else None)
        for name, judged in labels.items()
    }
    if kept.height == 0:
        shown = ", ".join(f"{name} {value}" for name, value in agreement.items()) or "no judges"
        raise DataError(
            f"filter: kept 0 of {generated} dialogues (min_agree {min_agree} of {1 + len(labels)} labels; "
            f"judge agreement with the intended emotion: {shown})"
        )
    intervals = {name: exact_binomial_ci(sum(x == t for x, t in zip(judged, themes)), generated)
                 for name, judged in labels.items()}
    chance = judge_chance(themes)
    kept_counts = dict(kept.group_by("theme").len().iter_rows())
    all_counts = dict(labelled.group_by("theme").len().iter_rows())
    table1 = {
        e: {"count": kept_counts.get(e, 0), "percent": round(100 * kept_counts.get(e, 0) / kept.height, 2)}
        for e in EMOTIONS
    }
    table1["total"] = {"count": kept.height, "percent": 100.0}
    names = list(labels)
    report = {
        "generated": generated,
        "kept": kept.height,
        "dropped": generated - kept.height,
        "min_agree": min_agree,
        "judges": names,
        "table1": table1,
        "dropped_per_emotion": {e: all_counts.get(e, 0) - kept_counts.get(e, 0) for e in EMOTIONS},
        "judge_agreement": agreement,
        "judge_agreement_ci95": {name: [_rounded(low), _rounded(high)] for name, (low, high) in intervals.items()},
        "judge_chance": _rounded(chance),
        "judges_at_chance": judges_at_chance(intervals, chance),
        "judge_invalid": {name: sum(x is None for x in judged) for name, judged in labels.items()},
        "kappa": {
            "cohen": {f"{a}-{b}": _rounded(cohen_kappa(labels[a], labels[b])) for a, b in combinations(names, 2)},
            "fleiss": _rounded(fleiss_kappa_of_labels([labels[n] for n in names])),
            # each judge against the intended emotion (over the dialogues it labelled): chance-corrected agreement
            "cohen_vs_intended": {name: _rounded(cohen_kappa(labels[name], themes)) for name in names},
        },
    }
    return kept, report
