"""Data checks at the stage boundaries: great-expectations 1.x suites over the polars tables.

Each check returns the record of what it checked when the data is good (one entry per
expectation: the file, the expectation, its column, passed), which the stage saves beside its
outputs, and otherwise raises DataCheckError, one line naming the file, the column, the failed
expectation and up to three offending rows (by row number and id).
great_expectations is imported inside the functions because importing it takes seconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from emoneurons.data.io import DataError
from emoneurons.emotions import EMOTIONS

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


def _failure(column: str | None, expectation: str, detail: str, kind: str = "column") -> str:
    where = f"{kind} {column!r}: " if column else ""
    return f"{where}{expectation} failed{': ' if detail else ''}{detail}"


def _raise(source: str, failures: Sequence[str]) -> None:
    if failures:
        raise DataCheckError(f"{source}: " + "; ".join(failures))


def _row_label(df: pl.DataFrame) -> Callable[[int], str]:
    """How a message points at row i of df: part, row number, id and line, when the table has them."""

    def label(i: int) -> str:
        part = f"{df['part'][i]} " if "part" in df.columns else ""
        row = df["row"][i] if "row" in df.columns else i
        row_id = f" (id {df['id'][i]!r})" if "id" in df.columns else ""
        line = f" line {df['line'][i]}" if "line" in df.columns else ""
        return f"{part}row {row}{row_id}{line}"

    return label


def _row_examples(label: Callable[[int], str], rows: Sequence[int], values: Sequence[Any]) -> str:
    return ", ".join(f"{label(int(row))}: {_shown(value)}" for row, value in list(zip(rows, values))[:EXAMPLES])


def _describe(result: Any, df: pl.DataFrame) -> str:
    """One failed GX expectation result as 'column ...: expectation failed: what was seen'."""
    config = result.expectation_config
    column = _column_of(config.kwargs)
    info = result.exception_info or {}
    raised = [v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    if info.get("raised_exception") or raised:
        message = info.get("exception_message") or raised[0].get("exception_message")
        return _failure(column, config.type, f"raised {str(message).splitlines()[0]}")
    found = result.result or {}
    if "unexpected_count" in found:
        values = found.get("partial_unexpected_list") or []
        rows = found.get("partial_unexpected_index_list") or []
        examples = _row_examples(_row_label(df), rows, values) if rows else ", ".join(
            _shown(v) for v in values[:EXAMPLES]
        )
        unit = "lines" if "line" in df.columns else "rows"
        detail = f"{found['unexpected_count']} of {found.get('element_count', df.height)} {unit}, e.g. {examples}"
    elif "partial_missing_list" in found:
        detail = "missing " + ", ".join(_shown(v) for v in found["partial_missing_list"][:EXAMPLES])
    else:
        detail = f"observed {_shown(found.get('observed_value'))}"
    return _failure(column, config.type, detail)


def _gx() -> Any:
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


def _ran(checked: Checked | None, source: str, expectation: str, column: str | None, passed: bool) -> None:
    if checked is not None:
        checked.append({"file": source, "expectation": expectation, "column": column, "passed": bool(passed)})


def _column_of(kwargs: dict[str, Any]) -> str | None:
    if "column_list" in kwargs:  # a compound expectation names its columns joined by '/'
        return "/".join(kwargs["column_list"])
    return kwargs.get("column") or (f"{kwargs['column_A']}/{kwargs['column_B']}" if "column_A" in kwargs else None)


def _failures(df: pl.DataFrame, source: str, expectations: Sequence[Any], checked: Checked | None = None) -> list[str]:
    """Validate one table against a list of GX expectations; describe each failure in a phrase;
    every expectation that ran goes into `checked`, in the suite's order."""
    gx = _gx()
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
        _ran(checked, source, config.type, _column_of(config.kwargs), result.success)
    failed = sorted((r for r in results if not r.success), key=position)
    return [_describe(r, df) for r in failed]


def _require_columns(df: pl.DataFrame, source: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        detail = f"missing {', '.join(map(repr, missing))} (has {', '.join(df.columns) or 'none'})"
        _raise(source, [_failure(None, "expect_table_columns_to_match_set", detail)])


def _turn_lines(df: pl.DataFrame) -> pl.DataFrame:
    """One row per dialogue line (row, id, line number, text), so a bad line is shown as itself."""
    # The text column keeps the name `dialogue` so a failure names the table's column.
    return (
        df.select("id", pl.col("dialogue").str.split("\n"))
        .with_row_index("row")
        .explode("dialogue")
        .filter(pl.col("dialogue").is_not_null())
        .with_columns(line=pl.col("row").cum_count().over("row"))
    )


def check_topics(df: pl.DataFrame, source: str) -> Checked:
    """topic/round/parent: topic non-empty and unique case- and whitespace-insensitively."""
    expect = _gx().expectations
    checked: Checked = []
    _require_columns(df, source, ("topic", "round", "parent"))
    failures = _failures(
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
        failures.append(_failure("topic", "unique (case- and whitespace-insensitive)", detail))
    _ran(checked, source, "unique (case- and whitespace-insensitive)", "topic", not repeated.height)
    _raise(source, failures)
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


def _turn_failures(df: pl.DataFrame, source: str, checked: Checked | None = None) -> list[str]:
    turn = _gx().expectations.ExpectColumnValuesToMatchRegex(column="dialogue", regex=TURN_REGEX)
    return _failures(_turn_lines(df), source, [turn], checked)


def check_dialogues(df: pl.DataFrame, source: str) -> Checked:
    """id/topic/theme/dialogue/backend/model: unique ids, six emotions, every line 'A: ' or 'B: '."""
    gx = _gx()
    checked: Checked = []
    _require_columns(df, source, DIALOGUE_COLUMNS)
    _raise(source, _failures(df, source, _dialogue_expectations(gx), checked) + _turn_failures(df, source, checked))
    return checked


def check_filtered(df: pl.DataFrame, judges: Sequence[str], source: str) -> Checked:
    """The dialogue checks plus judge_<name> labels, n_agree and label == theme."""
    gx = _gx()
    checked: Checked = []
    expect = gx.expectations
    judge_columns = [f"judge_{name}" for name in judges]
    _require_columns(df, source, (*DIALOGUE_COLUMNS, *judge_columns, "n_agree", "label"))
    failures = _failures(
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
    )
    _raise(source, failures + _turn_failures(df, source, checked))
    return checked


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
    _ran(checked, source, f"test share {test_fraction} per emotion", "theme", not off)
    if not off:
        return []
    return [_failure("theme", f"test share {test_fraction} per emotion", ", ".join(off[:EXAMPLES]))]


def check_split(
    train: pl.DataFrame,
    test: pl.DataFrame,
    test_fraction: float,
    emotions: Sequence[str] = EMOTIONS,
    *,
    sources: tuple[str, str],
) -> Checked:
    """Both parts non-empty, disjoint by id, every emotion in each, test share per emotion as asked."""
    expect = _gx().expectations
    checked: Checked = []
    for part, source in zip((train, test), sources):
        _require_columns(part, source, ("id", "theme"))
        present = [
            expect.ExpectTableRowCountToBeBetween(min_value=1),
            expect.ExpectColumnValuesToNotBeNull(column="id"),
            expect.ExpectColumnDistinctValuesToContainSet(column="theme", value_set=list(emotions)),
        ]
        _raise(source, _failures(part, source, present, checked))
    both = pl.concat(
        [train.select("id", part=pl.lit("train")).with_row_index("row"),
         test.select("id", part=pl.lit("test")).with_row_index("row")]
    )
    # Unique over train + test means no id is in both parts (nor twice in one).
    disjoint = _failures(both, f"{sources[0]} + {sources[1]}", [expect.ExpectColumnValuesToBeUnique(column="id")], checked)
    _raise(f"{sources[0]} + {sources[1]}", disjoint)
    _raise(sources[1], _test_share_failures(train, test, test_fraction, checked, sources[1]))
    return checked


def check_counts(f: torch.Tensor, T: torch.Tensor, source: str) -> Checked:
    """f [layers, neurons, 6] and T [6]: integer, non-negative, f <= T for every emotion."""
    import torch

    n = len(EMOTIONS)
    failures: list[str] = []
    checked: Checked = []
    if f.dim() != 3 or f.shape[-1] != n:
        failures.append(_failure("f", "shape [layers, neurons, 6]", f"got {list(f.shape)}", "tensor"))
    _ran(checked, source, "shape [layers, neurons, 6]", "f", f.dim() == 3 and f.shape[-1] == n)
    if T.shape != (n,):
        failures.append(_failure("T", "shape [6]", f"got {list(T.shape)}", "tensor"))
    _ran(checked, source, "shape [6]", "T", T.shape == (n,))
    for name, tensor in (("f", f), ("T", T)):
        integer = not (tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool)
        if not integer:
            failures.append(_failure(name, "integer dtype", f"got {tensor.dtype}", "tensor"))
        _ran(checked, source, "integer dtype", name, integer)
    _raise(source, failures)  # the value checks below need the right shapes

    for name, tensor in (("f", f), ("T", T)):
        negative = torch.nonzero(tensor < 0)
        if len(negative):
            shown = ", ".join(f"{tuple(i.tolist())}: {tensor[tuple(i)].item()}" for i in negative[:EXAMPLES])
            failures.append(_failure(name, "non-negative", f"{len(negative)} entries, e.g. {shown}", "tensor"))
        _ran(checked, source, "non-negative", name, not len(negative))
    over = torch.nonzero(f > T)
    if len(over):
        shown = ", ".join(
            f"(layer {l}, neuron {u}, {EMOTIONS[e]}): {f[l, u, e].item()} > {T[e].item()}"
            for l, u, e in over[:EXAMPLES].tolist()
        )
        failures.append(_failure("f", "f <= T per emotion", f"{len(over)} entries, e.g. {shown}", "tensor"))
    _ran(checked, source, "f <= T per emotion", "f", not len(over))
    _raise(source, failures)
    return checked


NEURON_COLUMNS = ("ratio", "emotion", "layer", "index")


def neuron_table(record: dict[str, Any]) -> pl.DataFrame:
    """neurons.json's selections as one row per (ratio, emotion, layer, index), with an id naming it."""
    rows = [
        (ratio, emotion, *pair)
        for ratio, selection in record.get("ratios", {}).items()
        for emotion, pairs in selection.get("neurons", {}).items()
        for pair in pairs
    ]
    # A malformed pair (not [layer, index]) becomes nulls, which the suite reports by its row.
    rows = [(r, e, *(rest if len(rest) == 2 else (None, None))) for r, e, *rest in rows]
    df = pl.DataFrame(
        rows, schema={"ratio": pl.String, "emotion": pl.String, "layer": pl.Int64, "index": pl.Int64}, orient="row"
    )
    return df.with_columns(
        id=pl.format("ratio {} {} ({}, {})", "ratio", "emotion", pl.col("layer").fill_null(-1), pl.col("index").fill_null(-1))
    )


def _count_failures(record: dict[str, Any], table: pl.DataFrame, source: str, checked: Checked) -> list[str]:
    """Per ratio: all six emotions listed, per_emotion and selected agree with the listed neurons."""
    failures: list[str] = []
    missing, off = [], []
    for ratio, selection in record["ratios"].items():
        listed = selection.get("neurons", {})
        missing += [f"ratio {ratio}: {e!r}" for e in EMOTIONS if e not in listed]
        per_emotion = selection.get("per_emotion", {})
        off += [
            f"ratio {ratio} {e}: per_emotion {per_emotion.get(e)} but {len(pairs)} listed"
            for e, pairs in listed.items()
            if per_emotion.get(e) != len(pairs)
        ]
        distinct = table.filter(pl.col("ratio") == ratio).select("layer", "index").unique().height
        if selection.get("selected") != distinct:
            off.append(f"ratio {ratio}: selected {selection.get('selected')} but {distinct} distinct neurons listed")
    if missing:
        failures.append(_failure("emotion", "every emotion listed per ratio", "missing " + ", ".join(missing[:EXAMPLES])))
    _ran(checked, source, "every emotion listed per ratio", "emotion", not missing)
    if off:
        failures.append(_failure("per_emotion/selected", "counts match the listed neurons", ", ".join(off[:EXAMPLES])))
    _ran(checked, source, "counts match the listed neurons", "per_emotion/selected", not off)
    return failures


def check_neurons(record: dict[str, Any], source: str) -> Checked:
    """neurons.json: emotions of the six, layer in [0, layers), index in [0, neurons_per_layer),
    no (ratio, emotion, layer, index) listed twice, counts agreeing with the lists."""
    expect = _gx().expectations
    checked: Checked = []
    shape = [k for k in ("layers", "neurons_per_layer", "ratios") if k not in record]
    if shape:
        _raise(source, [_failure(None, "keys layers, neurons_per_layer, ratios", f"missing {', '.join(shape)}")])
    table = neuron_table(record)
    failures = _failures(
        table,
        source,
        [
            *(expect.ExpectColumnValuesToNotBeNull(column=c) for c in NEURON_COLUMNS),
            expect.ExpectColumnValuesToBeInSet(column="emotion", value_set=list(EMOTIONS)),
            expect.ExpectColumnValuesToBeBetween(column="layer", min_value=0, max_value=record["layers"] - 1),
            expect.ExpectColumnValuesToBeBetween(column="index", min_value=0, max_value=record["neurons_per_layer"] - 1),
            expect.ExpectCompoundColumnsToBeUnique(column_list=list(NEURON_COLUMNS)),
        ],
        checked,
    )
    _raise(source, failures + _count_failures(record, table, source, checked))
    return checked


def evaluation_table(evaluation: dict[str, Any]) -> pl.DataFrame:
    """eval.json's conditions as one row each: id, every accuracy and 95% bound, the McNemar p and
    how many test dialogues the condition answered (predicted) and counted (confusion + unparseable)."""
    rows = []
    for condition in evaluation.get("conditions", []):
        accuracy, ci95 = condition.get("accuracy") or {}, condition.get("ci95") or {}
        row: dict[str, Any] = {"id": condition.get("id")}
        for key in (*EMOTIONS, "overall"):
            low, high = (ci95.get(key) or [None, None])[:2]
            row |= {f"accuracy_{key}": accuracy.get(key), f"ci95_low_{key}": low, f"ci95_high_{key}": high}
        row["mcnemar_p"] = (condition.get("mcnemar") or {}).get("p")
        row["n_predicted"] = len(condition.get("predicted") or [])
        row["n_counted"] = sum(map(sum, condition.get("confusion") or [])) + sum((condition.get("unparseable") or {}).values())
        rows.append(row)
    rates = [f"{kind}_{key}" for key in (*EMOTIONS, "overall") for kind in ("accuracy", "ci95_low", "ci95_high")]
    schema = {"id": pl.String, **{c: pl.Float64 for c in (*rates, "mcnemar_p")}, "n_predicted": pl.Int64, "n_counted": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def check_evaluation(evaluation: dict[str, Any], planned: Sequence[str], n_test: int, source: str) -> Checked:
    """eval.json: every planned condition once and no other, accuracies, their 95% bounds and the
    McNemar p within [0, 1] (low <= high), each condition answering and counting all n_test dialogues."""
    expect = _gx().expectations
    checked: Checked = []
    table = evaluation_table(evaluation)
    rates = [c for c in table.columns if c.startswith(("accuracy_", "ci95_"))]
    failures = _failures(
        table,
        source,
        [
            expect.ExpectColumnValuesToNotBeNull(column="id"),
            expect.ExpectColumnValuesToBeUnique(column="id"),
            expect.ExpectColumnDistinctValuesToContainSet(column="id", value_set=list(planned)),
            expect.ExpectColumnValuesToBeInSet(column="id", value_set=list(planned)),
            *(expect.ExpectColumnValuesToNotBeNull(column=c) for c in rates),
            *(expect.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1) for c in (*rates, "mcnemar_p")),
            *(
                expect.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A=f"ci95_high_{key}", column_B=f"ci95_low_{key}", or_equal=True
                )
                for key in (*EMOTIONS, "overall")
            ),
            expect.ExpectColumnValuesToBeBetween(column="n_predicted", min_value=n_test, max_value=n_test),
            expect.ExpectColumnValuesToBeBetween(column="n_counted", min_value=n_test, max_value=n_test),
        ],
        checked,
    )
    _raise(source, failures)
    return checked


def _set_failures(source: str, column: str, expectation: str, problems: Sequence[str], checked: Checked) -> list[str]:
    """A suite's own check over whole groups (not rows): its problems as one failure phrase."""
    _ran(checked, source, expectation, column, not problems)
    return [_failure(column, expectation, ", ".join(problems[:EXAMPLES]))] if problems else []


def cards_table(record: dict[str, Any]) -> pl.DataFrame:
    """cards.json's cards as one row each: emotion, layer, index, the card's P for its own emotion, id."""
    rows = [
        (emotion, card.get("layer"), card.get("index"), (card.get("P") or {}).get(emotion))
        for emotion, entry in record.get("emotions", {}).items()
        for card in entry.get("cards", [])
    ]
    df = pl.DataFrame(rows, schema={"emotion": pl.String, "layer": pl.Int64, "index": pl.Int64, "P": pl.Float64}, orient="row")
    return df.with_columns(id=pl.format("{} ({}, {})", "emotion", pl.col("layer").fill_null(-1), pl.col("index").fill_null(-1)))


def check_cards(record: dict[str, Any], layers: int, neurons_per_layer: int, source: str) -> Checked:
    """cards.json: each card's emotion one of the six, layer in [0, layers), index in
    [0, neurons_per_layer), its own P in [0, 1], no neuron twice for one emotion, at most
    top_neurons cards per emotion."""
    expect = _gx().expectations
    checked: Checked = []
    table = cards_table(record)
    failures = _failures(
        table,
        source,
        [
            *(expect.ExpectColumnValuesToNotBeNull(column=c) for c in ("layer", "index", "P")),
            expect.ExpectColumnValuesToBeInSet(column="emotion", value_set=list(EMOTIONS)),
            expect.ExpectColumnValuesToBeBetween(column="layer", min_value=0, max_value=layers - 1),
            expect.ExpectColumnValuesToBeBetween(column="index", min_value=0, max_value=neurons_per_layer - 1),
            expect.ExpectColumnValuesToBeBetween(column="P", min_value=0, max_value=1),
            expect.ExpectCompoundColumnsToBeUnique(column_list=["emotion", "layer", "index"]),
        ],
        checked,
    )
    top = record.get("top_neurons")
    over = [f"{e} has {len(v.get('cards', []))}" for e, v in record.get("emotions", {}).items()
            if top is not None and len(v.get("cards", [])) > top]
    failures += _set_failures(source, "emotion", f"at most top_neurons ({top}) cards per emotion", over, checked)
    _raise(source, failures)
    return checked


def steer_table(record: dict[str, Any]) -> pl.DataFrame:
    """steer.json as one row per share: the unmodified model per emotion, then each emotion's
    steered and control conditions per alpha; judges' shares as judge_<name> columns; id names the row."""
    judges = sorted({name for e in record.get("emotions", {}).values() for c in (*e.get("steered", []), *e.get("controls", []))
                     for name in c.get("judges", {})} | set(record.get("unmodified", {}).get("judges", {})))
    rows = []
    unmodified = record.get("unmodified", {})
    for emotion, values in unmodified.get("per_emotion", {}).items():
        shares = {f"judge_{name}": (j.get("share") or {}).get(emotion) for name, j in unmodified.get("judges", {}).items()}
        rows.append({"emotion": emotion, "set": "unmodified", "alpha": None, "share": values.get("share"), **shares})
    for emotion, entry in record.get("emotions", {}).items():
        conditions = [("steered", c) for c in entry.get("steered", [])]
        conditions += [(f"control d{c.get('draw')}", c) for c in entry.get("controls", [])]
        for name, c in conditions:
            shares = {f"judge_{j}": v.get("share") for j, v in c.get("judges", {}).items()}
            rows.append({"emotion": emotion, "set": name, "alpha": c.get("alpha"), "share": c.get("share"), **shares})
    schema = {"emotion": pl.String, "set": pl.String, "alpha": pl.Float64, "share": pl.Float64,
              **{f"judge_{name}": pl.Float64 for name in judges}}
    df = pl.DataFrame(rows, schema=schema)
    alpha = pl.when(pl.col("alpha").is_null()).then(pl.lit("")).otherwise(pl.format(" α={}", "alpha"))
    return df.with_columns(id=pl.concat_str(pl.col("emotion"), pl.lit(" "), pl.col("set"), alpha))


def check_steer(record: dict[str, Any], alphas: Sequence[float], control_draws: int, source: str) -> Checked:
    """steer.json: emotions of the six, every share (classifier and judges) in [0, 1], alphas from
    steer.alphas, and each emotion with neurons steered at every alpha once, as is each control draw."""
    expect = _gx().expectations
    checked: Checked = []
    table = steer_table(record)
    judges = [c for c in table.columns if c.startswith("judge_")]
    failures = _failures(
        table,
        source,
        [
            expect.ExpectColumnValuesToNotBeNull(column="share"),
            expect.ExpectColumnValuesToBeInSet(column="emotion", value_set=list(EMOTIONS)),
            *(expect.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1) for c in ("share", *judges)),
            # A null alpha is the unmodified model's row; GX set checks skip nulls.
            expect.ExpectColumnValuesToBeInSet(column="alpha", value_set=[float(a) for a in alphas]),
        ],
        checked,
    )
    wanted = sorted(float(a) for a in alphas)
    off = []
    for emotion, entry in record.get("emotions", {}).items():
        if not entry.get("n_neurons"):
            continue
        for name in ("steered", *(f"control d{d}" for d in range(control_draws))):
            rows = table.filter((pl.col("emotion") == emotion) & (pl.col("set") == name))
            got = sorted(rows["alpha"].drop_nulls().to_list())  # a null alpha counts as missing
            if got != wanted:
                off.append(f"{emotion} {name}: α {', '.join(f'{a:g}' for a in got) or 'none'}, expected {', '.join(f'{a:g}' for a in wanted)}")
    failures += _set_failures(source, "alpha", "every alpha once per emotion and control draw", off, checked)
    _raise(source, failures)
    return checked
