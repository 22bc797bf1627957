"""report.md's section "Emotion neurons vs random neurons": each masked condition's paired effect
against its random-neuron controls, the verdict of the corrected test against each control kind
(the verdict's null first), whether "specific" survives activity matching, the draw-level null,
and graded masking's dose-response."""

from __future__ import annotations

from emoneurons.emotions import EMOTIONS
from emoneurons.params import same_ratio
from emoneurons.report.document.blocks import Block, Heading, Image, Paragraph, Table
from emoneurons.report.document.number_formats import ci_plain, count, number, p_value
from emoneurons.report.results.effects import dose_rows, draw_null_rows, effect_rows, survives_matching
from emoneurons.report.results.run import RunMetrics
from emoneurons.report.style import LAYER_RANGES

SHORT = {"specific": "specific", "not distinguishable from random": "not distinguishable", "not enough data": "not enough data",
         "not enough draws": "not enough draws"}
KIND_TEXT = {
    "matched": "activity-matched random neurons (in each layer the same count and the same P(active) quantile bins "
               "as the set, over all train tokens, never the set's own neurons)",
    "uniform": "random neurons drawn uniformly from the same layers (the same count per layer)",
}


def specificity_section(run: RunMetrics) -> list[Block]:
    rows = effect_rows(run.eval)
    summary = run.eval.effects or {}
    if not rows:
        return []
    null, kinds = run.eval.null, run.eval.control_kinds
    measure = "Δ log p(masked emotion's label)" if summary.get("test_effect") == "delta_masked" else \
        "change in answering the masked emotion (1/0)"
    verdicts = {}
    for r in rows:
        verdicts.setdefault(r["masked"], {})[(r["ratio"], r["layers"])] = r["verdicts"]
    keys = sorted({(r["ratio"], r["layers"]) for r in rows},
                  key=lambda k: (k[1] != "all", k[0], LAYER_RANGES.index(k[1]) if k[1] in LAYER_RANGES else 99))

    def cell(found: dict) -> str:
        return " / ".join(SHORT.get(found.get(k), "n/a") for k in kinds)

    grid = tuple((e, *(cell(verdicts.get(e, {}).get(k, {})) for k in keys)) for e in EMOTIONS if e in verdicts)
    others = [k for k in kinds if k != null]
    detail = tuple(
        (r["masked"], f"{100 * r['ratio']:g}", str(r["layers"]), count(r["n_neurons"]),
         f"{number(r['effect'])} {ci_plain(*r['effect_ci'])}", number(r["control"]),
         f"{number(r['difference'])} {ci_plain(*r['difference_ci'])}", p_value(r["p"]), p_value(r["p_holm"]),
         p_value(r["p_bh"]), r["verdict"] or "n/a", *(r["verdicts"].get(k) or "n/a" for k in others))
        for r in rows)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("specific", "not distinguishable from random", "not enough data")}
    blocks: list[Block] = [
        Heading("Emotion neurons vs random neurons"),
        Paragraph(
            f"Paired on the same {count(run.eval.n_test)} test dialogues. Effect: {measure} under the mask "
            f"minus unmodified, per dialogue. The verdict's null: {KIND_TEXT.get(null, null)}"
            + "".join(f"; beside it, {KIND_TEXT.get(k, k)}" for k in others)
            + f". Rule: {summary.get('rule', 'n/a')} "
            f"Against {null} controls, of {len(rows)} masked conditions: {counts['specific']} specific, "
            f"{counts['not distinguishable from random']} not distinguishable from random, {counts['not enough data']} not "
            "enough data. docs/METHOD.md says why the matched null is the stricter one."),
        Table(("masked emotion", *(f"{100 * r:g}% {layers}" for r, layers in keys)), grid,
              f"Verdict per emotion, ratio and layer range, against {' / '.join(kinds)} controls",
              (False,) * (1 + len(keys))),
    ]
    blocks += _matching_table(run, null)
    blocks.append(Table(
        ("masked", "ratio (%)", "layers", "neurons", "effect (95% CI)", f"{null} control effect",
         "difference (95% CI)", "p", "Holm p", "BH p", "verdict", *(f"verdict vs {k}" for k in others)), detail,
        f"Every masked condition against its random-neuron controls ({null}; bootstrap CIs over dialogues)",
        (False, True, False, True, True, True, True, True, True, True, False, *(False for _ in others))))
    return blocks + _draw_null_blocks(run) + _dose_blocks(run)


def _matching_table(run: RunMetrics, null: str) -> list[Block]:
    """Per emotion at select.top_rate on all layers: the test against each kind, and whether
    'specific' survives matching."""
    top_rate = run.neurons.top_rate
    by_kind = {k: {r["masked"]: r for r in effect_rows(run.eval, k) if r["layers"] == "all" and same_ratio(r["ratio"], top_rate)}
               for k in ("matched", "uniform") if k in run.eval.control_kinds}
    if len(by_kind) < 2:
        return []
    lines = []
    for emotion in EMOTIONS:
        matched, uniform = by_kind["matched"].get(emotion), by_kind["uniform"].get(emotion)
        if matched is None or uniform is None:
            continue
        lines.append((emotion, number(matched["effect"]),
                      number(matched["control"]), p_value(matched["p_holm"]), matched["verdict"] or "n/a",
                      number(uniform["control"]), p_value(uniform["p_holm"]), uniform["verdict"] or "n/a",
                      survives_matching(matched["verdicts"])))
    return [Table(("masked", "effect", "matched control", "Holm p", "verdict", "uniform control", "Holm p", "verdict",
                   "specific survives matching?"), tuple(lines),
                  f"Does 'specific' survive activity matching? Each emotion's neurons at {100 * top_rate:g}%, all layers",
                  (False, True, True, True, False, True, True, False, False))]


def _not_run(heading: str, why: str, figure: str) -> list[Block]:
    """A part the run did not compute: its heading, why, and its figure (which says so too)."""
    return [Heading(heading, 3), Paragraph(f"Not run here ({why})."), Image(figure, f"{heading}: not run")]


def _draw_null_blocks(run: RunMetrics) -> list[Block]:
    rows = draw_null_rows(run.eval)
    if not rows:
        return _not_run("The draw-level null", "eval.null_draws: 0, or an eval.json from before it", "draw_null")
    record = run.eval.draw_null or {}
    lines = tuple(
        (r["masked"], f"{100 * r['ratio']:g}", str(r["layers"]), number(r["effect"]),
         f"{number(r['draws_mean'])} ± {number(r['draws_sd'])}", f"[{number(r['draws_min'])}, {number(r['draws_max'])}]",
         f"{r['rank']} of {r['draws'] + 1}" if r["rank"] is not None else "n/a", p_value(r["p"]), p_value(r["p_holm"]),
         SHORT.get(r["verdict"], r["verdict"] or "n/a"), p_value(r["p_normal"]), p_value(r["p_normal_holm"]),
         SHORT.get(r["verdict_normal"], r["verdict_normal"] or "n/a"))
        for r in rows)
    return [
        Heading("The draw-level null", 3),
        Paragraph(
            f"The per-dialogue test above pairs each dialogue with the mean of only {count(run.params.eval.control_draws)} "
            f"control draw(s) of each kind, so its verdict inherits their luck. Here each covered condition's mean effect is "
            f"ranked among the mean effects of {record.get('draws')} {record.get('kind')} control draws. "
            f"{record.get('rule', '')} Cost: {count(record.get('runs'))} extra masked runs "
            f"({count(record.get('tokens_computed'))} tokens computed)."),
        Image("draw_null", "The draw-level null: each emotion's effect among its control draws"),
        Table(("masked", "ratio (%)", "layers", "effect", "draws: mean ± sd", "draws: range", "rank", "p", "Holm p",
               "verdict (rank)", "p (normal)", "Holm p", "verdict (normal)"), lines,
              "Each covered condition's mean effect among its control draws' mean effects",
              (False, True, False, True, True, True, True, True, True, False, True, True, False)),
    ]


def _dose_blocks(run: RunMetrics) -> list[Block]:
    rows = dose_rows(run.eval)
    if not rows:
        return _not_run("Graded masking: dose-response", "eval.scales: [], the default of `make run`; the atlas plan "
                        "turns it on", "dose_response")
    scales = rows[0]["scales"]
    lines = tuple(
        (r["emotion"], count(r["n_neurons"]), *(f"{number(m)} ({number(c)})" for m, c in zip(r["mask"], r["control"])),
         "n/a" if r["monotone"] is None else ("yes" if r["monotone"] else f"no ({r['reversals']} reversal(s))"))
        for r in rows)
    monotone = sum(bool(r["monotone"]) for r in rows)
    return [
        Heading("Graded masking: dose-response", 3),
        Paragraph(
            f"Each emotion's neurons at select.top_rate on all layers, and their {rows[0]['kind']} controls, with the "
            f"activations multiplied by a factor instead of zeroed (factor 0 is the plain mask, factor 1 the unmodified "
            f"model). {monotone} of {len(rows)} emotions' effects are monotone in the factor. "
            f"{(run.eval.dose_response or {}).get('rule', '')}"),
        Image("dose_response", "Graded masking: each emotion's effect against the factor, its control beside it"),
        Table(("masked", "neurons", *(f"x{s:g}: mask (control)" for s in scales), "monotone"), lines,
              "Mean effect at each factor, the mask's and (in parentheses) its control's",
              (False, True, *(True for _ in scales), False)),
    ]
