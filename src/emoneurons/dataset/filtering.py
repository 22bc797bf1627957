"""filter: keep a dialogue when at least `min_agree` of its labels (the intended emotion plus each
judge's) equal the intended emotion (paper, B.3), and report Table 1 and judge agreement.

The rule is applied a batch of dialogues at a time (`AgreementFilter`): everything the report
needs is kept as counts (per emotion, per judge, per pair of labels), so the filter holds one
batch whatever the data set's size, and the report is the same as over the whole table at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path

import polars as pl
from tqdm import tqdm

from emoneurons.emotions import EMOTIONS
from emoneurons.io.suites import BatchChecks, Checked, check_dialogues, check_filtered
from emoneurons.io.tables import DataError, table_writer
from emoneurons.stats.metrics import CHANCE, exact_binomial_ci


class PairTally:
    """Two raters' labels as counts of (a's label, b's label) over the items both labelled: what
    Cohen's kappa needs, added to a batch at a time."""

    def __init__(self) -> None:
        self.pairs: Counter[tuple[str, str]] = Counter()

    def add(self, a: Sequence[str | None], b: Sequence[str | None]) -> None:
        self.pairs.update((x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None)

    def kappa(self) -> float | None:
        """Cohen's kappa; None when undefined (no item labelled by both, or chance agreement of 1)."""
        n = sum(self.pairs.values())
        if n == 0:
            return None
        observed = sum(count for (x, y), count in self.pairs.items() if x == y) / n
        first, second = Counter[str](), Counter[str]()
        for (x, y), count in self.pairs.items():
            first[x] += count
            second[y] += count
        expected = sum((first[c] / n) * (second[c] / n) for c in sorted(first.keys() | second.keys()))
        return None if expected == 1 else (observed - expected) / (1 - expected)


def cohen_kappa(a: Sequence[str | None], b: Sequence[str | None]) -> float | None:
    """Cohen's kappa of two raters over the items both labelled; None when undefined (no such
    items, or chance agreement of 1)."""
    tally = PairTally()
    tally.add(a, b)
    return tally.kappa()


class FleissTally:
    """An items x categories table of ratings as the sums Fleiss' kappa needs: the items, the
    raters per item, the sum over items of squared category counts, and each category's total."""

    def __init__(self, categories: int) -> None:
        self.items = self.raters = self.squares = 0
        self.totals = [0] * categories

    def add(self, counts: Sequence[Sequence[int]]) -> None:
        for row in counts:
            raters = sum(row)
            if raters < 2 or (self.items and raters != self.raters):
                raise ValueError("fleiss_kappa: every item needs the same number (>= 2) of ratings")
            self.items, self.raters = self.items + 1, raters
            self.squares += sum(c * c for c in row)
            for j, c in enumerate(row):
                self.totals[j] += c

    def kappa(self) -> float | None:
        """Fleiss' kappa; None when undefined (no items, or chance agreement of 1)."""
        if not self.items:
            return None
        raters = self.raters
        observed = (self.squares - self.items * raters) / (raters * (raters - 1)) / self.items
        expected = sum((total / (self.items * raters)) ** 2 for total in self.totals)
        return None if expected == 1 else (observed - expected) / (1 - expected)

    def add_labels(self, labels: Sequence[Sequence[str | None]]) -> None:
        """Several raters' label lists (emotions): the items every rater labelled."""
        self.add([[column.count(e) for e in EMOTIONS] for column in zip(*labels, strict=True)
                  if all(x is not None for x in column)])


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from an items x categories table of how many raters chose each category
    (every item rated by the same number of raters, at least two); None when undefined."""
    if not counts:
        return None
    tally = FleissTally(len(counts[0]))
    tally.add(counts)
    return tally.kappa()


def fleiss_kappa_of_labels(labels: Sequence[Sequence[str | None]]) -> float | None:
    """Fleiss' kappa of several raters' label lists, over the items every rater labelled."""
    if len(labels) < 2:
        return None
    tally = FleissTally(len(EMOTIONS))
    tally.add_labels(labels)
    return tally.kappa()


def _chance(theme_counts: Mapping[str, int]) -> float:
    total = sum(theme_counts.values())
    return max(CHANCE, max(theme_counts.values()) / total) if total else CHANCE


def judge_chance(themes: Sequence[str]) -> float:
    """The agreement a judge without information reaches: the better of guessing (1/6) and always
    answering the most frequent intended emotion."""
    return _chance(Counter(themes))


def judges_at_chance(agreements: Mapping[str, tuple[float, float]], chance: float) -> list[str]:
    """The judges whose agreement's 95% interval reaches down to chance: not shown to filter."""
    return [name for name, (low, _) in agreements.items() if not low > chance]


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


class AgreementFilter:
    """The agreement rule over dialogues given a batch at a time: `add` returns a batch's kept
    rows, `report` the reports/filter.json report over all batches (counts kept, never rows)."""

    def __init__(self, judges: Sequence[str], min_agree: int) -> None:
        self.judges, self.min_agree = list(judges), min_agree
        self.generated = 0
        self.themes: Counter[str] = Counter()
        self.kept: Counter[str] = Counter()
        self.agree: Counter[str] = Counter()  # per judge, dialogues whose label is the intended emotion
        self.invalid: Counter[str] = Counter()
        self.vs_intended = {name: PairTally() for name in self.judges}
        self.between = {pair: PairTally() for pair in combinations(self.judges, 2)}
        self.fleiss = FleissTally(len(EMOTIONS)) if len(self.judges) >= 2 else None

    def add(self, df: pl.DataFrame, labels: Mapping[str, Sequence[str | None]]) -> pl.DataFrame:
        """The batch's dialogues with n_agree >= min_agree, with judge_<name>, n_agree and label columns."""
        if list(labels) != self.judges:
            raise ValueError(f"labels of judges {list(labels)}, expected {self.judges}")
        for name, judged in labels.items():
            if len(judged) != df.height:
                raise ValueError(f"judge {name!r}: {len(judged)} labels for {df.height} dialogues")
        judge_columns = {f"judge_{name}": pl.Series(f"judge_{name}", list(judged), dtype=pl.String) for name, judged in labels.items()}
        agree = pl.lit(1, dtype=pl.Int64)  # the intended emotion agrees with itself
        for column in judge_columns:
            agree = agree + (pl.col(column) == pl.col("theme")).fill_null(False).cast(pl.Int64)
        labelled = (
            df.with_columns(*judge_columns.values())
            .with_columns(agree.alias("n_agree"), pl.col("theme").alias("label"))
        )
        kept = labelled.filter(pl.col("n_agree") >= self.min_agree)

        themes = df["theme"].to_list()
        self.generated += df.height
        self.themes.update(themes)
        self.kept.update(kept["theme"].to_list())
        for name, judged in labels.items():
            self.agree[name] += sum(x == t for x, t in zip(judged, themes))
            self.invalid[name] += sum(x is None for x in judged)
            self.vs_intended[name].add(judged, themes)
        for (a, b), tally in self.between.items():
            tally.add(labels[a], labels[b])
        if self.fleiss is not None:
            self.fleiss.add_labels([labels[name] for name in self.judges])
        return kept

    def report(self) -> dict:
        """The report over every batch added; DataError with the numbers when nothing was kept."""
        generated, kept = self.generated, sum(self.kept.values())
        agreement = {name: _rounded(self.agree[name] / generated if generated else None) for name in self.judges}
        if kept == 0:
            shown = ", ".join(f"{name} {value}" for name, value in agreement.items()) or "no judges"
            raise DataError(
                f"filter: kept 0 of {generated} dialogues (min_agree {self.min_agree} of {1 + len(self.judges)} labels; "
                f"judge agreement with the intended emotion: {shown})"
            )
        intervals = {name: exact_binomial_ci(self.agree[name], generated) for name in self.judges}
        chance = _chance(self.themes)
        table1 = {e: {"count": self.kept[e], "percent": round(100 * self.kept[e] / kept, 2)} for e in EMOTIONS}
        table1["total"] = {"count": kept, "percent": 100.0}
        return {
            "generated": generated,
            "kept": kept,
            "dropped": generated - kept,
            "min_agree": self.min_agree,
            "judges": self.judges,
            "table1": table1,
            "dropped_per_emotion": {e: self.themes[e] - self.kept[e] for e in EMOTIONS},
            "judge_agreement": agreement,
            "judge_agreement_ci95": {name: [_rounded(low), _rounded(high)] for name, (low, high) in intervals.items()},
            "judge_chance": _rounded(chance),
            "judges_at_chance": judges_at_chance(intervals, chance),
            "judge_invalid": {name: self.invalid[name] for name in self.judges},
            "kappa": {
                "cohen": {f"{a}-{b}": _rounded(tally.kappa()) for (a, b), tally in self.between.items()},
                "fleiss": _rounded(self.fleiss.kappa()) if self.fleiss is not None else None,
                # each judge against the intended emotion (over the dialogues it labelled): chance-corrected agreement
                "cohen_vs_intended": {name: _rounded(self.vs_intended[name].kappa()) for name in self.judges},
            },
        }


def agreement_filter(
    df: pl.DataFrame, labels: Mapping[str, Sequence[str | None]], min_agree: int
) -> tuple[pl.DataFrame, dict]:
    """The dialogues with n_agree >= min_agree, with judge_<name>, n_agree and label columns, and
    the reports/filter.json report. DataError with the numbers when nothing is kept."""
    rule = AgreementFilter(list(labels), min_agree)
    kept = rule.add(df, labels)
    return kept, rule.report()


Batch = tuple[pl.DataFrame, Mapping[str, Sequence[str | None]]]  # dialogues and each judge's label per dialogue


def filter_to_table(batches: Iterable[Batch], total: int, judges: Sequence[str], min_agree: int, out: Path, *,
                    input_source: str | None = None) -> tuple[dict, Checked]:
    """The agreement rule over `batches` (of `total` dialogues in all), the kept dialogues written
    to `out` as they come (atomically: the file appears once every batch passed), each batch's
    kept rows checked (check_filtered) and, with `input_source`, its dialogues too (check_dialogues,
    messages naming that file). The report and the record of the checks; DataError (or a failed
    check) before `out` appears. Shows progress with an ETA."""
    rule = AgreementFilter(judges, min_agree)
    inputs = BatchChecks(check_dialogues, input_source) if input_source is not None else None
    outputs = BatchChecks(lambda batch, source, first_row: check_filtered(batch, judges, source, first_row), str(out))
    bar = tqdm(total=total, desc="filter: label and check", unit=" dialogues", disable=None)  # on a terminal only
    with bar as progress, table_writer(out) as write:
        for df, labels in batches:
            if inputs is not None:
                inputs.add(df)
            kept = rule.add(df, labels)
            outputs.add(kept)
            write(kept)
            progress.update(df.height)
        report = rule.report()
        checked = (inputs.finish() if inputs is not None else []) + outputs.finish()
    return report, checked
