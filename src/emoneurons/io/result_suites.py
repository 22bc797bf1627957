"""Data checks of the results: great-expectations suites over what select (neurons.json),
mask-eval (eval.json), cards (cards.json) and steer (steer.json) write, each turned into a
table first; the same records and one-line errors as io/suites.py, whose machinery they use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from emoneurons.emotions import EMOTIONS
from emoneurons.io.suites import (
    Checked,
    failed_expectations,
    failure_line,
    group_check,
    load_gx,
    raise_failures,
)

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
    return [
        *group_check(checked, source, "emotion", "every emotion listed per ratio", missing, lead="missing "),
        *group_check(checked, source, "per_emotion/selected", "counts match the listed neurons", off),
    ]


def check_neurons(record: dict[str, Any], source: str) -> Checked:
    """neurons.json: emotions of the six, layer in [0, layers), index in [0, neurons_per_layer),
    no (ratio, emotion, layer, index) listed twice, counts agreeing with the lists."""
    expect = load_gx().expectations
    checked: Checked = []
    shape = [k for k in ("layers", "neurons_per_layer", "ratios") if k not in record]
    if shape:
        raise_failures(source, [failure_line(None, "keys layers, neurons_per_layer, ratios", f"missing {', '.join(shape)}")])
    table = neuron_table(record)
    failures = failed_expectations(
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
    raise_failures(source, failures + _count_failures(record, table, source, checked))
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
    expect = load_gx().expectations
    checked: Checked = []
    table = evaluation_table(evaluation)
    rates = [c for c in table.columns if c.startswith(("accuracy_", "ci95_"))]
    failures = failed_expectations(
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
    raise_failures(source, failures)
    return checked


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
    expect = load_gx().expectations
    checked: Checked = []
    table = cards_table(record)
    failures = failed_expectations(
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
    failures += group_check(checked, source, "emotion", f"at most top_neurons ({top}) cards per emotion", over)
    raise_failures(source, failures)
    return checked


def _coherence_columns(condition: dict[str, Any]) -> dict[str, Any]:
    coherence = condition.get("coherence") or {}  # steer.json before coherence: null columns
    return {"logp_per_token": coherence.get("logp_per_token"), "repeated_share": coherence.get("repeated_share")}


def steer_table(record: dict[str, Any]) -> pl.DataFrame:
    """steer.json as one row per share: the unmodified model per emotion, then each emotion's
    steered and control conditions per alpha; judges' shares as judge_<name> columns; id names the row."""
    judges = sorted({name for e in record.get("emotions", {}).values() for c in (*e.get("steered", []), *e.get("controls", []))
                     for name in c.get("judges", {})} | set(record.get("unmodified", {}).get("judges", {})))
    rows = []
    unmodified = record.get("unmodified", {})
    for emotion, values in unmodified.get("per_emotion", {}).items():
        shares = {f"judge_{name}": (j.get("share") or {}).get(emotion) for name, j in unmodified.get("judges", {}).items()}
        rows.append({"emotion": emotion, "set": "unmodified", "alpha": None, "share": values.get("share"), **shares,
                     **_coherence_columns(unmodified)})
    for emotion, entry in record.get("emotions", {}).items():
        conditions = [("steered", c) for c in entry.get("steered", [])]
        conditions += [(f"control d{c.get('draw')}", c) for c in entry.get("controls", [])]
        for name, c in conditions:
            shares = {f"judge_{j}": v.get("share") for j, v in c.get("judges", {}).items()}
            rows.append({"emotion": emotion, "set": name, "alpha": c.get("alpha"), "share": c.get("share"), **shares,
                         **_coherence_columns(c)})
    schema = {"emotion": pl.String, "set": pl.String, "alpha": pl.Float64, "share": pl.Float64,
              "logp_per_token": pl.Float64, "repeated_share": pl.Float64,
              **{f"judge_{name}": pl.Float64 for name in judges}}
    df = pl.DataFrame(rows, schema=schema)
    alpha = pl.when(pl.col("alpha").is_null()).then(pl.lit("")).otherwise(pl.format(" α={}", "alpha"))
    return df.with_columns(id=pl.concat_str(pl.col("emotion"), pl.lit(" "), pl.col("set"), alpha))


def check_steer(record: dict[str, Any], alphas: Sequence[float], control_draws: int, source: str) -> Checked:
    """steer.json: emotions of the six, every share (classifier and judges) in [0, 1], alphas from
    steer.alphas, and each emotion with neurons steered at every alpha once, as is each control draw."""
    expect = load_gx().expectations
    checked: Checked = []
    table = steer_table(record)
    judges = [c for c in table.columns if c.startswith("judge_")]
    failures = failed_expectations(
        table,
        source,
        [
            expect.ExpectColumnValuesToNotBeNull(column="share"),
            expect.ExpectColumnValuesToBeInSet(column="emotion", value_set=list(EMOTIONS)),
            *(expect.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1) for c in ("share", *judges)),
            # A null alpha is the unmodified model's row; GX set checks skip nulls.
            expect.ExpectColumnValuesToBeInSet(column="alpha", value_set=[float(a) for a in alphas]),
            # Coherence (evaluate/coherence.py): a share, and a mean log-probability (nulls: no reply had a token).
            expect.ExpectColumnValuesToBeBetween(column="repeated_share", min_value=0, max_value=1),
            expect.ExpectColumnValuesToBeBetween(column="logp_per_token", max_value=0),
        ],
        checked,
    )
    if "coherence" in record:  # the rule is there: every condition must have been measured
        unmeasured = table.filter(pl.col("repeated_share").is_null())["id"].to_list()
        failures += group_check(checked, source, "repeated_share", "coherence measured for every condition", unmeasured)
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
    failures += group_check(checked, source, "alpha", "every alpha once per emotion and control draw", off)
    raise_failures(source, failures)
    return checked
