"""report.md's figure sections (Figures 1, 2, 3, 4, 14 and 15): each figure and the numbers behind
it as tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.report.document.blocks import Block, Heading, Image, Paragraph, Table
from emoneurons.report.document.number_formats import ci, ci_plain, count, number, pct, pp
from emoneurons.report.results.accuracy import rq2_view
from emoneurons.report.results.confusions import failure_counts, failure_distribution, masked_confusions
from emoneurons.report.results.effects import effect_rows
from emoneurons.report.results.neuron_sets import OVERLAP_DEFINITION, overlap_of, per_layer_counts
from emoneurons.report.results.run import RunMetrics
from emoneurons.report.results.sweeps import layer_sweep, layer_sweep_ratio, ratio_sweep
from emoneurons.report.style import LAYER_RANGES


def figure1_section(run: RunMetrics, top_rate: float) -> list[Block]:
    per_layer = per_layer_counts(run.neurons, top_rate)
    totals = tuple(
        (e, count(run.neuron_metrics.get(f"neurons_{e}", sum(per_layer[e]))),
         f"{int(max(range(len(per_layer[e])), key=lambda i: per_layer[e][i]))}")
        for e in EMOTIONS
    )
    layers = len(next(iter(per_layer.values())))
    layer_rows = tuple((str(i), *(str(per_layer[e][i]) for e in EMOTIONS)) for i in range(layers))
    return [
        Heading("Figure 1: emotion neurons per layer"),
        Image("figure1", "Figure 1: emotion neurons per layer"),
        Table(("emotion", "neurons", "layer with most"), totals,
              f"Emotion neurons per emotion (top {100 * top_rate:g}%)", (False, True, True)),
        Table(("layer", *EMOTIONS), layer_rows, "Emotion neurons per layer",
              (True,) * (1 + len(EMOTIONS))),
    ]


def figure2_section(run: RunMetrics, top_rate: float) -> list[Block]:
    view = rq2_view(run.eval, top_rate)
    base, masked, control = view["unmodified"], view["masked"], view["control"]
    summary = []
    for e in EMOTIONS:
        before = base["accuracy"][e]
        after = masked[e]["accuracy"][e] if e in masked else math.nan
        ctrl = control[e][e] if e in control else math.nan
        summary.append((
            e, pct(before), ci(*base["ci95"][e]), pct(after),
            ci(*masked[e]["ci95"][e]) if e in masked else "n/a",
            pp(100 * (after - before)), pct(ctrl), pp(100 * (ctrl - before)),
        ))
    full = [("unmodified", *(pct(base["accuracy"][e]) for e in (*EMOTIONS, "overall")))]
    full += [(f"{m} masked", *(pct(masked[m]["accuracy"][e]) for e in (*EMOTIONS, "overall")))
             for m in EMOTIONS if m in masked]
    full += [(f"{m} control", *(pct(control[m][e]) for e in (*EMOTIONS, "overall")))
             for m in EMOTIONS if m in control]
    return [
        Heading("Figure 2: accuracy with each emotion's neurons masked"),
        Image("figure2", "Figure 2: accuracy per target emotion under masking"),
        Table(("emotion", "unmodified (%)", "unmodified 95% CI", "own neurons masked (%)",
               "masked 95% CI",
               "change (pp)", "random control (%)", "control change (pp)"),
              tuple(summary), f"Each emotion's accuracy when its own neurons are masked (all "
              f"layers, top {100 * top_rate:g}%); control = random neurons, same count per layer, "
              f"mean over draws", (False, True, False, True, False, True, True, True)),
        Table(("condition", *EMOTIONS, "overall"), tuple(full),
              "Accuracy (%) of every true emotion (columns) under every condition (rows)",
              (False,) + (True,) * (len(EMOTIONS) + 1)),
        *_effect_image_blocks(run, "figure2_effect", "Figure 2 (effect): paired effect of each emotion's neurons vs random neurons"),
        *_true_label_table(run, top_rate),
    ]


def _true_label_table(run: RunMetrics, top_rate: float) -> list[Block]:
    """Δ log p(true label) averaged per true emotion, for each emotion's neurons masked (all layers)."""
    rows = []
    for m in EMOTIONS:
        found = run.eval.find("mask", m, top_rate, "all")
        per = (((found[0].effect or {}).get("delta_true") or {}).get("per_emotion") or {}) if found else {}
        if per:
            rows.append((m, *(f"{number((per.get(e) or {}).get('mean'))} {ci_plain(*((per.get(e) or {}).get('ci95') or (None, None)))}"
                              for e in EMOTIONS)))
    if not rows:
        return []
    return [Table(("masked", *EMOTIONS), tuple(rows),
                  "Δ log p(true label) vs unmodified, mean per true emotion (columns) with its 95% bootstrap CI "
                  "(n/a below 5 dialogues: a bootstrap of 2-4 values only restates them)",
                  (False,) + (True,) * len(EMOTIONS))]


def _effect_image_blocks(run: RunMetrics, name: str, alt: str) -> list[Block]:
    if not effect_rows(run.eval):
        return [Paragraph("This eval.json has no paired effects (written before mask-eval measured them).")]
    return [Image(name, alt)]


def _change_table(rows: Sequence[Mapping[str, Any]], key: str, keys: Sequence[Any],
                  label: str) -> Table:
    lines = []
    for m in EMOTIONS:
        for k in keys:
            mask = {r["emotion"]: r["accuracy_change"] for r in rows
                    if r["masked"] == m and r[key] == k and r["condition"] == "mask"}
            if not mask:
                continue
            ctrl = next((r["accuracy_change"] for r in rows if r["masked"] == m and r[key] == k
                         and r["condition"] == "control" and r["emotion"] == m), math.nan)
            shown = f"{100 * k:g}" if key == "ratio" else str(k)
            lines.append((m, shown, *(pp(mask.get(e, math.nan)) for e in EMOTIONS), pp(ctrl)))
    return Table(("masked", label, *EMOTIONS, "control (masked emotion)"), tuple(lines),
                 "Accuracy change vs unmodified (pp) of each true emotion (columns)",
                 (False, True) + (True,) * (len(EMOTIONS) + 1))


def figure3_section(run: RunMetrics, changes: Sequence[Mapping[str, Any]]) -> list[Block]:
    rows = ratio_sweep(changes)
    ratios = sorted({r["ratio"] for r in rows})
    return [
        Heading("Figure 3: masking ratio"),
        Image("figure3", "Figure 3: accuracy change over masking ratios"),
        _change_table(rows, "ratio", ratios, "ratio (%)"),
        *_effect_image_blocks(run, "figure3_effect", "Figure 3 (effect): paired effect over masking ratios vs random neurons"),
    ]


def figure4_section(changes: Sequence[Mapping[str, Any]], top_rate: float) -> list[Block]:
    ratio = layer_sweep_ratio(changes, top_rate)
    rows = layer_sweep(changes, ratio)
    ranges = [r for r in LAYER_RANGES if any(row["layers"] == r for row in rows)]
    text = (f"Masking ratio {100 * ratio:g}%. Bottom / middle / top = first / second / last third "
            f"of the layers." if ratio is not None else "No layer-range conditions were evaluated.")
    return [
        Heading("Figure 4: layer ranges"),
        Image("figure4", "Figure 4: accuracy change by layer range"),
        Paragraph(text),
        _change_table(rows, "layers", ranges, "layers"),
    ]


def _matrix_table(matrix: torch.Tensor, first: str, caption: str, extra: Sequence[str] = (),
                  extra_header: str = "", diagonal: str | None = None) -> Table:
    """A 6 x 6 share matrix in percent; `diagonal` replaces the diagonal cells when given."""
    rows = []
    for i, e in enumerate(EMOTIONS):
        cells = tuple(diagonal if diagonal is not None and i == j else pct(float(matrix[i, j]))
                      for j in range(len(EMOTIONS)))
        rows.append((e, *cells, *((extra[i],) if extra else ())))
    headers = (first, *EMOTIONS, *((extra_header,) if extra else ()))
    return Table(headers, tuple(rows), caption, (False,) + (True,) * (len(headers) - 1))


def figure14_section(run: RunMetrics, top_rate: float) -> list[Block]:
    overlap = overlap_of(run.neurons, top_rate)
    return [
        Heading("Figure 14: overlap of emotion neuron sets"),
        Paragraph(f"Overlap ratio = {OVERLAP_DEFINITION}. The paper does not state its definition; "
                  f"this one is symmetric, as the paper's Figure 14 is, and 100% on the diagonal."),
        Image("figure14", "Figure 14: overlap ratio heatmap"),
        _matrix_table(overlap, "A \\ B", "Overlap ratio (%) between emotion neuron sets"),
    ]


def figure15_section(run: RunMetrics, top_rate: float) -> list[Block]:
    confusions, evaluated = masked_confusions(run.eval, top_rate)
    distribution = failure_distribution(confusions)
    failures = failure_counts(confusions)
    notes = [str(int(failures[i])) if evaluated[i] else "not evaluated" for i in range(len(EMOTIONS))]
    return [
        Heading("Figure 15: misclassifications after masking"),
        Paragraph("Row = masked emotion (the true emotion of the dialogues counted), column = the "
                  "wrong answer; shares within that row's failures only (correct answers and "
                  "unparseable answers left out), so each row with failures sums to 100%; '-' = the "
                  "correct answer (excluded), n/a = no failures."),
        Image("figure15", "Figure 15: misclassification heatmap"),
        _matrix_table(distribution, "masked \\ predicted",
                      "Share (%) of the masked emotion's failures going to each wrong answer",
                      notes, "failures", diagonal="-"),
    ]
