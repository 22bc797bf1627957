"""report.md's section "Emotion neurons vs random neurons": each masked condition's paired effect
against its random-neuron controls, and the verdict of the corrected test."""

from __future__ import annotations

from emoneurons.emotions import EMOTIONS
from emoneurons.report.document.blocks import Block, Heading, Paragraph, Table
from emoneurons.report.document.number_formats import ci_plain, count, number, p_value
from emoneurons.report.results.effects import effect_rows
from emoneurons.report.results.run import RunMetrics
from emoneurons.report.style import LAYER_RANGES


def specificity_section(run: RunMetrics) -> list[Block]:
    rows = effect_rows(run.eval)
    summary = run.eval.effects or {}
    if not rows:
        return []
    measure = "Δ log p(masked emotion's label)" if summary.get("test_effect") == "delta_masked" else \
        "change in answering the masked emotion (1/0)"
    verdicts = {}
    for r in rows:
        verdicts.setdefault(r["masked"], {})[(r["ratio"], r["layers"])] = r["verdict"]
    keys = sorted({(r["ratio"], r["layers"]) for r in rows},
                  key=lambda k: (k[1] != "all", k[0], LAYER_RANGES.index(k[1]) if k[1] in LAYER_RANGES else 99))
    short = {"specific": "specific", "not distinguishable from random": "not distinguishable", "not enough data": "not enough data"}
    grid = tuple((e, *(short.get(verdicts.get(e, {}).get(k), "n/a") for k in keys)) for e in EMOTIONS if e in verdicts)
    detail = tuple(
        (r["masked"], f"{100 * r['ratio']:g}", str(r["layers"]), count(r["n_neurons"]),
         f"{number(r['effect'])} {ci_plain(*r['effect_ci'])}", number(r["control"]),
         f"{number(r['difference'])} {ci_plain(*r['difference_ci'])}", p_value(r["p"]), p_value(r["p_holm"]),
         p_value(r["p_bh"]), r["verdict"] or "n/a")
        for r in rows)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in short}
    return [
        Heading("Emotion neurons vs random neurons"),
        Paragraph(
            f"Paired on the same {count(run.eval.n_test)} test dialogues. Effect: {measure} under the mask "
            f"minus unmodified, per dialogue. Rule: {summary.get('rule', 'n/a')} "
            f"Of {len(rows)} masked conditions: {counts['specific']} specific, {counts['not distinguishable from random']} "
            f"not distinguishable from random, {counts['not enough data']} not enough data."),
        Table(("masked emotion", *(f"{100 * r:g}% {layers}" for r, layers in keys)), grid,
              "Verdict per emotion, ratio and layer range", (False,) * (1 + len(keys))),
        Table(("masked", "ratio (%)", "layers", "neurons", "effect (95% CI)", "control effect",
               "difference (95% CI)", "p", "Holm p", "BH p", "verdict"), detail,
              "Every masked condition against its random-neuron controls (bootstrap CIs over dialogues)",
              (False, True, False, True, True, True, True, True, True, True, False)),
    ]
