"""Data checks at the stage boundaries: great-expectations 1.x suites over the polars tables.

Each check returns the record of what it checked when the data is good (one entry per
expectation: the file, the expectation, its column, passed), which the stage saves beside its
outputs, and otherwise raises DataCheckError, one line naming the file, the column, the failed
expectation and up to three offending rows (by row number and id).
great_expectations is imported inside the functions because importing it takes seconds.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from emoneurons.emotions import EMOTIONS
from emoneurons.io.tables import DataError

if TYPE_CHECKING:
    import torch

DIALOGUE_COLUMNS = ("id", "topic", "theme", "dialogue", "backend", "model")
# One speaker turn: "A: text" or "B: text"; a narration line or an empty line fails it.
TURN_REGEX = r"^(?:A|B): \S"
INTEGER_DTYPES = [
    f"{prefix}{bits}" for prefix in ("int", "Int", "uint", "UInt") for bits in (8, 16, 32, 64)
]
EXAMPLES = 3
SHOWN_CHARS = 60


class DataCheckError(DataError):
    """A data check failed: the file, the column, the expectation and a few offending rows."""


def _shown(value: Any) -> str:
    text = repr(value)  # repr keeps newlines escaped, so the message stays one line
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def failure_line(column: str | None, expectation: str, detail: str, kind: str = "column") -> str:
    where = f"{kind} {column!r}: " if column else ""
    return f"{where}{expectation} failed{': ' if detail else ''}{detail}"


def raise_failures(source: str, failures: Sequence[str]) -> None:
    if failures:
        raise DataCheckError(f"{source}: " + "; ".join(failures))


def _row_label(df: pl.DataFrame, first_row: int = 0) -> Callable[[int], str]:
    """How a message points at row i of df: part, row number (counted from `first_row`: df is a
    batch of a longer table), id and line, when the table has them."""

    def label(i: int) -> str:
        part = f"{df['part'][i]} " if "part" in df.columns else ""
        row = df["row"][i] if "row" in df.columns else first_row + i
        row_id = f" (id {df['id'][i]!r})" if "id" in df.columns else ""
        line = f" line {df['line'][i]}" if "line" in df.columns else ""
        return f"{part}row {row}{row_id}{line}"

    return label


def _row_examples(label: Callable[[int], str], rows: Sequence[int], values: Sequence[Any]) -> str:
    return ", ".join(f"{label(int(row))}: {_shown(value)}" for row, value in list(zip(rows, values))[:EXAMPLES])


def _describe(result: Any, df: pl.DataFrame, first_row: int = 0) -> str:
    """One failed GX expectation result as 'column ...: expectation failed: what was seen'."""
    config = result.expectation_config
    column = _column_of(config.kwargs)
    info = result.exception_info or {}
    raised = [v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    if info.get("raised_exception") or raised:
        message = info.get("exception_message") or raised[0].get("exception_message")
        return failure_line(column, config.type, f"raised {str(message).splitlines()[0]}")
    found = result.result or {}
    if "unexpected_count" in found:
        values = found.get("partial_unexpected_list") or []
        rows = found.get("partial_unexpected_index_list") or []
        examples = _row_examples(_row_label(df, first_row), rows, values) if rows else ", ".join(
            _shown(v) for v in values[:EXAMPLES]
        )
        unit = "lines" if "line" in df.columns else "rows"
        detail = f"{found['unexpected_count']} of {found.get('element_count', df.height)} {unit}, e.g. {examples}"
    elif "partial_missing_list" in found:
        detail = "missing " + ", ".join(_shown(v) for v in found["partial_missing_list"][:EXAMPLES])
    else:
        detail = f"observed {_shown(found.get('observed_value'))}"
    return failure_line(column, config.type, detail)


def load_gx() -> Any:
    """great_expectations, imported on first use (it takes seconds) with usage reporting off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # the pipeline runs offline
    import great_expectations

    return great_expectations


def _key(kind: str, kwargs: dict[str, Any]) -> tuple[str, str]:
    return kind, repr(sorted((k, v) for k, v in kwargs.items() if k != "batch_id"))


Checked = list[dict[str, Any]]  # one {"file", "expectation", "column", "passed"} per expectation run


def checks_path(output: str | Path) -> Path:
    """Where a stage saves the record of its data checks: beside its output, `<stem>.checks.json`
    for a file, `checks.json` inside an output folder."""
    output = Path(output)
    return output / "checks.json" if not output.suffix else output.with_name(f"{output.stem}.checks.json")


def checks_record(checked: Checked) -> dict[str, Any]:
    """The saved form: how many ran and passed, then each expectation in the order it ran."""
    return {"ran": len(checked), "passed": sum(e["passed"] for e in checked), "expectations": checked}


def record_ran(checked: Checked | None, source: str, expectation: str, column: str | None, passed: bool) -> None:
    if checked is not None:
        checked.append({"file": source, "expectation": expectation, "column": column, "passed": bool(passed)})


def group_check(checked: Checked | None, source: str, column: str, expectation: str, problems: Sequence[str],
                lead: str = "") -> list[str]:
    """A suite's own check over whole groups (not rows), recorded as run: its problems (up to
    EXAMPLES, after `lead`) as one failure line, none when it passed."""
    record_ran(checked, source, expectation, column, not problems)
    return [failure_line(column, expectation, lead + ", ".join(problems[:EXAMPLES]))] if problems else []


def _column_of(kwargs: dict[str, Any]) -> str | None:
    if "column_list" in kwargs:  # a compound expectation names its columns joined by '/'
        return "/".join(kwargs["column_list"])
    return kwargs.get("column") or (f"{kwargs['column_A']}/{kwargs['column_B']}" if "column_A" in kwargs else None)


def failed_expectations(df: pl.DataFrame, source: str, expectations: Sequence[Any], checked: Checked | None = None,
                        first_row: int = 0) -> list[str]:
    """Validate one table against a list of GX expectations; describe each failure in a phrase;
    every expectation that ran goes into `checked`, in the suite's order. `first_row`: the number
    of df's first row in the table it is a batch of (messages name rows by that count)."""
    gx = load_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("polars")
        .add_dataframe_asset("table")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": df.to_pandas()})
    )
    suite = gx.ExpectationSuite(name=source, expectations=list(expectations))
    results = batch.validate(suite, result_format="SUMMARY").results
    # GX may return results in any order; report failures in the order the suite lists them.
    order = {_key(e.configuration.type, e.configuration.kwargs): i for i, e in enumerate(expectations)}

    def position(result: Any) -> int:
        return order.get(_key(result.expectation_config.type, result.expectation_config.kwargs), len(order))

    for result in sorted(results, key=position):
        config = result.expectation_config
        record_ran(checked, source, config.type, _column_of(config.kwargs), result.success)
    failed = sorted((r for r in results if not r.success), key=position)
    return [_describe(r, df, first_row) for r in failed]


def _require_columns(df: pl.DataFrame, source: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        detail = f"missing {', '.join(map(repr, missing))} (has {', '.join(df.columns) or 'none'})"
        raise_failures(source, [failure_line(None, "expect_table_columns_to_match_set", detail)])


def _turn_lines(df: pl.DataFrame, first_row: int = 0) -> pl.DataFrame:
    """One row per dialogue line (row, id, line number, text), so a bad line is shown as itself."""
    # The text column keeps the name `dialogue` so a failure names the table's column.
    return (
        df.select("id", pl.col("dialogue").str.split("\n"))
        .with_row_index("row", offset=first_row)
        .explode("dialogue")
        .filter(pl.col("dialogue").is_not_null())
        .with_columns(line=pl.col("row").cum_count().over("row"))
    )


def check_topics(df: pl.DataFrame, source: str) -> Checked:
    """topic/round/parent: topic non-empty and unique case- and whitespace-insensitively."""
    expect = load_gx().expectations
    checked: Checked = []
    _require_columns(df, source, ("topic", "round", "parent"))
    failures = failed_expectations(
        df,
        source,
        [
            expect.ExpectTableRowCountToBeBetween(min_value=1),
            expect.ExpectColumnValuesToNotBeNull(column="topic"),
            expect.ExpectColumnValuesToMatchRegex(column="topic", regex=r"\S"),
            expect.ExpectColumnValuesToNotBeNull(column="round"),
            expect.ExpectColumnValuesToBeInTypeList(column="round", type_list=INTEGER_DTYPES),
            expect.ExpectColumnValuesToBeBetween(column="round", min_value=0),
        ],
        checked,
    )
    key = pl.col("topic").str.strip_chars().str.replace_all(r"\s+", " ").str.to_lowercase()
    repeated = df.with_row_index("row").filter(key.is_duplicated()).sort(key, "row")
    if repeated.height:
        examples = _row_examples(lambda i: f"row {i}", repeated["row"].to_list(), repeated["topic"].to_list())
        detail = f"{repeated.height} rows share a topic, e.g. {examples}"
        failures.append(failure_line("topic", "unique (case- and whitespace-insensitive)", detail))
    record_ran(checked, source, "unique (case- and whitespace-insensitive)", "topic", not repeated.height)
    raise_failures(source, failures)
    return checked


def _dialogue_expectations(gx: Any) -> list[Any]:
    expect = gx.expectations
    return [
        expect.ExpectTableRowCountToBeBetween(min_value=1),
        *(expect.ExpectColumnValuesToNotBeNull(column=c) for c in DIALOGUE_COLUMNS),
        expect.ExpectColumnValuesToBeUnique(column="id"),
        expect.ExpectColumnValuesToBeInSet(column="theme", value_set=list(EMOTIONS)),
        # Two speakers: an A turn and a B turn somewhere in the dialogue.
        expect.ExpectColumnValuesToMatchRegexList(
            column="dialogue", regex_list=[r"(?m)^A: \S", r"(?m)^B: \S"], match_on="all"
        ),
    ]


def _turn_failures(df: pl.DataFrame, source: str, checked: Checked | None = None, first_row: int = 0) -> list[str]:
    turn = load_gx().expectations.ExpectColumnValuesToMatchRegex(column="dialogue", regex=TURN_REGEX)
    return failed_expectations(_turn_lines(df, first_row), source, [turn], checked)


def check_dialogues(df: pl.DataFrame, source: str, first_row: int = 0) -> Checked:
    """id/topic/theme/dialogue/backend/model: unique ids, six emotions, every line 'A: ' or 'B: '.
    `first_row`: df is a batch of a longer table, from that row (BatchChecks)."""
    gx = load_gx()
    checked: Checked = []
    _require_columns(df, source, DIALOGUE_COLUMNS)
    raise_failures(source, failed_expectations(df, source, _dialogue_expectations(gx), checked, first_row)
                   + _turn_failures(df, source, checked, first_row))
    return checked


def check_filtered(df: pl.DataFrame, judges: Sequence[str], source: str, first_row: int = 0) -> Checked:
    """The dialogue checks plus judge_<name> labels, n_agree and label == theme."""
    gx = load_gx()
    checked: Checked = []
    expect = gx.expectations
    judge_columns = [f"judge_{name}" for name in judges]
    _require_columns(df, source, (*DIALOGUE_COLUMNS, *judge_columns, "n_agree", "label"))
    failures = failed_expectations(
        df,
        source,
        [
            *_dialogue_expectations(gx),
            # A judge with no valid answer is null; GX set checks skip nulls, as intended.
            *(expect.ExpectColumnValuesToBeInSet(column=c, value_set=list(EMOTIONS)) for c in judge_columns),
            expect.ExpectColumnValuesToNotBeNull(column="n_agree"),
            expect.ExpectColumnValuesToBeInTypeList(column="n_agree", type_list=INTEGER_DTYPES),
            expect.ExpectColumnValuesToBeBetween(column="n_agree", min_value=0, max_value=1 + len(judges)),
            expect.ExpectColumnPairValuesToBeEqual(column_A="label", column_B="theme"),
        ],
        checked,
        first_row,
    )
    raise_failures(source, failures + _turn_failures(df, source, checked, first_row))
    return checked


UNIQUE = "expect_column_values_to_be_unique"


class BatchChecks:
    """A table's suite run a batch at a time (`check(batch, source, first_row)`: check_dialogues,
    check_filtered), with what a batch cannot see checked across batches: ids unique in the whole
    table. Memory is a batch and the ids (16 bytes a row, in one polars column, no Python object
    per row). The record lists each expectation once, as over the whole table (every batch passed
    it: a failure raises at once)."""

    def __init__(self, check: Callable[[pl.DataFrame, str, int], Checked], source: str) -> None:
        self.check, self.source = check, source
        self.rows = 0
        self.ids: list[pl.Series] = []
        self.checked: Checked | None = None

    def add(self, batch: pl.DataFrame) -> None:
        """Check one batch (an empty one adds nothing: the row-count check is the table's)."""
        if batch.height == 0:
            return
        checked = self.check(batch, self.source, self.rows)
        # GX's validation objects hold the batch in reference cycles: freed now, not whenever
        # Python's cyclic collector next runs (which let RSS grow with the number of batches).
        gc.collect()
        self.checked = self.checked if self.checked is not None else checked
        self.ids.append(batch["id"])
        self.rows += batch.height

    def finish(self) -> Checked:
        """The ids checked across batches; the record. DataCheckError on an id in two batches."""
        if self.checked is None:
            raise ValueError(f"{self.source}: no rows were checked")
        if len(self.ids) > 1:
            ids = pl.concat(self.ids).to_frame("id").with_row_index("row")
            repeated = ids.filter(pl.col("id").is_duplicated())
            if repeated.height:
                examples = _row_examples(_row_label(repeated), range(repeated.height), repeated["id"].to_list())
                detail = f"{repeated.height} of {ids.height} rows, e.g. {examples}"
                raise_failures(self.source, [failure_line("id", UNIQUE, detail)])
        return self.checked


def _test_share_failures(train: pl.DataFrame, test: pl.DataFrame, test_fraction: float, checked: Checked | None, source: str) -> list[str]:
    """Per emotion, the test count may differ from round(n * test_fraction) by at most one."""
    sizes = (
        pl.concat([train.select("theme", test=pl.lit(0)), test.select("theme", test=pl.lit(1))])
        .group_by("theme")
        .agg(n=pl.len(), n_test=pl.col("test").sum())
        .sort("theme")
    )
    off = [
        f"{theme!r} has {n_test} of {n} in test, expected {round(n * test_fraction)} ± 1"
        for theme, n, n_test in sizes.iter_rows()
        if abs(n_test - round(n * test_fraction)) > 1
    ]
    return group_check(checked, source, "theme", f"test share {test_fraction} per emotion", off)


def _coded(df: pl.DataFrame) -> pl.DataFrame:
    """df's `id` as dense integer codes (equal ids, equal codes; a null stays null) and its `theme`, if
    any, categorical: the same verdicts for null, distinct-value and uniqueness checks, without the
    Python string a row that GX's pandas copies of a string column hold (~300 MiB at 864k rows)."""
    theme = [pl.col("theme").cast(pl.Categorical)] if "theme" in df.columns else []
    return df.select(pl.col("id").rank("dense").cast(pl.UInt32), *theme)


def _failed_coded(df: pl.DataFrame, source: str, expectations: Sequence[Any], checked: Checked) -> list[str]:
    """failed_expectations on _coded(df); when one fails, the same expectations on df itself, so that
    the messages name rows by their ids rather than by codes."""
    if not failed_expectations(_coded(df), source, expectations, checked):
        return []
    return failed_expectations(df, source, expectations)


def check_split(
    train: pl.DataFrame,
    test: pl.DataFrame,
    test_fraction: float,
    emotions: Sequence[str] = EMOTIONS,
    *,
    sources: tuple[str, str],
) -> Checked:
    """Both parts non-empty, disjoint by id, every emotion in each, test share per emotion as asked.
    GX sees the ids as integer codes (memory a few bytes a row at EmoPrism's volume, _coded)."""
    expect = load_gx().expectations
    checked: Checked = []
    for part, source in zip((train, test), sources):
        _require_columns(part, source, ("id", "theme"))
        present = [
            expect.ExpectTableRowCountToBeBetween(min_value=1),
            expect.ExpectColumnValuesToNotBeNull(column="id"),
            expect.ExpectColumnDistinctValuesToContainSet(column="theme", value_set=list(emotions)),
        ]
        raise_failures(source, _failed_coded(part, source, present, checked))
    both = pl.concat(
        [train.select("id", part=pl.lit("train")).with_row_index("row"),
         test.select("id", part=pl.lit("test")).with_row_index("row")]
    )
    # Unique over train + test means no id is in both parts (nor twice in one).
    both_source = f"{sources[0]} + {sources[1]}"
    raise_failures(both_source, _failed_coded(both, both_source, [expect.ExpectColumnValuesToBeUnique(column="id")], checked))
    raise_failures(sources[1], _test_share_failures(train, test, test_fraction, checked, sources[1]))
    return checked


def check_counts(f: torch.Tensor, T: torch.Tensor, source: str) -> Checked:
    """f [layers, neurons, 6] and T [6]: integer, non-negative, f <= T for every emotion."""
    import torch

    n = len(EMOTIONS)
    failures: list[str] = []
    checked: Checked = []
    if f.dim() != 3 or f.shape[-1] != n:
        failures.append(failure_line("f", "shape [layers, neurons, 6]", f"got {list(f.shape)}", "tensor"))
    record_ran(checked, source, "shape [layers, neurons, 6]", "f", f.dim() == 3 and f.shape[-1] == n)
    if T.shape != (n,):
        failures.append(failure_line("T", "shape [6]", f"got {list(T.shape)}", "tensor"))
    record_ran(checked, source, "shape [6]", "T", T.shape == (n,))
    for name, tensor in (("f", f), ("T", T)):
        integer = not (tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool)
        if not integer:
            failures.append(failure_line(name, "integer dtype", f"got {tensor.dtype}", "tensor"))
        record_ran(checked, source, "integer dtype", name, integer)
    raise_failures(source, failures)  # the value checks below need the right shapes

    for name, tensor in (("f", f), ("T", T)):
        negative = torch.nonzero(tensor < 0)
        if len(negative):
            shown = ", ".join(f"{tuple(i.tolist())}: {tensor[tuple(i)].item()}" for i in negative[:EXAMPLES])
            failures.append(failure_line(name, "non-negative", f"{len(negative)} entries, e.g. {shown}", "tensor"))
        record_ran(checked, source, "non-negative", name, not len(negative))
    over = torch.nonzero(f > T)
    if len(over):
        shown = ", ".join(
            f"(layer {l}, neuron {u}, {EMOTIONS[e]}): {f[l, u, e].item()} > {T[e].item()}"
            for l, u, e in over[:EXAMPLES].tolist()
        )
        failures.append(failure_line("f", "f <= T per emotion", f"{len(over)} entries, e.g. {shown}", "tensor"))
    record_ran(checked, source, "f <= T per emotion", "f", not len(over))
    raise_failures(source, failures)
    return checked
