"""report.md's section "Against the paper": the run beside the paper's published numbers
(report/document/paper_numbers.py), and why the two are not directly comparable."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from emoneurons.emotions import EMOTIONS
from emoneurons.report.document.blocks import Block, Heading, Paragraph, Table
from emoneurons.report.document.number_formats import count, pct, pp
from emoneurons.report.document.paper_numbers import (
    PAPER_LAYERS,
    PAPER_MASKING,
    PAPER_MODELS,
    PAPER_OVERLAP,
    PAPER_TEST_DIALOGUES,
)
from emoneurons.report.results.accuracy import baseline_clear, rq2_view
from emoneurons.report.results.neuron_sets import OVERLAP_DEFINITION, overlap_of, per_layer_counts
from emoneurons.report.results.run import RunMetrics, data_source, model_name
from emoneurons.report.results.sweeps import layer_sweep, layer_sweep_ratio


def paper_section(run: RunMetrics, top_rate: float, changes: Sequence[Mapping[str, Any]]) -> list[Block]:
    clear, *_ = baseline_clear(run.eval)
    return [
        Heading("Against the paper"),
        Paragraph(_not_comparable(run, model_name(run), clear)),
        *_neuron_count_blocks(run, top_rate),
        _masking_table(run, top_rate),
        _overlap_table(run, top_rate),
        _layer_range_table(changes, top_rate),
    ]


def _neuron_count_blocks(run: RunMetrics, top_rate: float) -> list[Block]:
    """Neurons per emotion here and in the paper, as shares of the neurons selected, and their ranking."""
    per_layer = per_layer_counts(run.neurons, top_rate)
    layers, width = run.neurons.layers, run.neurons.neurons_per_layer
    selected_here = top_rate * layers * width
    eight, seventy = PAPER_MODELS["Llama-3.1-8B-Instruct"], PAPER_MODELS["Llama-3.1-70B-Instruct"]
    sel8 = 0.01 * eight["layers"] * eight["neurons_per_layer"]
    sel70 = 0.01 * seventy["layers"] * seventy["neurons_per_layer"]
    neuron_rows = []
    for e in EMOTIONS:
        here = int(run.neuron_metrics.get(f"neurons_{e}", sum(per_layer[e])))
        p8, p70 = eight["neurons"].get(e), seventy["neurons"].get(e)
        neuron_rows.append((
            e, count(p8), pct(p8 / sel8) if p8 else "n/a", count(p70),
            pct(p70 / sel70) if p70 else "n/a", count(here),
            pct(here / selected_here) if selected_here else "n/a",
        ))
    rank_here = sorted(EMOTIONS, key=lambda e: -sum(per_layer[e]))
    rank_8b = sorted(eight["neurons"], key=lambda e: -eight["neurons"][e])
    return [
        Table(("emotion", "8B neurons", "8B share of selected (%)", "70B neurons",
               "70B share of selected (%)", "this run", "this run share of selected (%)"),
              tuple(neuron_rows),
              f"Emotion neurons per emotion. Share = neurons / (1% of all FFN neurons): 8B "
              f"{eight['layers']} x {eight['neurons_per_layer']:,} -> {sel8:,.0f}; 70B "
              f"{seventy['layers']} x {seventy['neurons_per_layer']:,} -> {sel70:,.0f}; this run "
              f"{layers} x {width:,} at {100 * top_rate:g}% -> {selected_here:,.0f}. Shares above "
              f"100% in total are expected: a neuron can belong to several emotions.",
              (False,) + (True,) * 6),
        Paragraph(f"Ranking by neuron count - paper 8B: {', '.join(rank_8b)}; this run: "
                  f"{', '.join(rank_here)}."),
    ]


def _masking_table(run: RunMetrics, top_rate: float) -> Table:
    view = rq2_view(run.eval, top_rate)
    mask_rows = []
    for model, emotion, before, after in PAPER_MASKING:
        here_before = view["unmodified"]["accuracy"][emotion]
        here_after = view["masked"][emotion]["accuracy"][emotion] if emotion in view["masked"] else math.nan
        mask_rows.append((model, emotion, f"{before:.2f}", f"{after:.2f}", pp(after - before),
                          pct(here_before), pct(here_after), pp(100 * (here_after - here_before))))
    return Table(("paper model", "emotion", "paper unmodified (%)", "paper masked (%)",
                  "paper change (pp)", "this run unmodified (%)", "this run masked (%)",
                  "this run change (pp)"), tuple(mask_rows),
                 "Own neurons masked (all layers, 1% in the paper)", (False, False) + (True,) * 6)


def _overlap_table(run: RunMetrics, top_rate: float) -> Table:
    overlap = overlap_of(run.neurons, top_rate)
    index = {e: i for i, e in enumerate(EMOTIONS)}
    overlap_rows = tuple(
        (model, f"{a}-{b}", published, pct(float(overlap[index[a], index[b]])))
        for model, a, b, published in PAPER_OVERLAP
    )
    return Table(("paper model", "pair", "paper overlap", "this run (%)"), overlap_rows,
                 f"Overlap ratio; this run uses {OVERLAP_DEFINITION}", (False, False, True, True))


def _layer_range_table(changes: Sequence[Mapping[str, Any]], top_rate: float) -> Table:
    layer_ratio = layer_sweep_ratio(changes, top_rate)
    layer_rows = []
    for emotion, layers_, published in PAPER_LAYERS:
        here = next((r["accuracy_change"] for r in layer_sweep(changes, layer_ratio)
                     if r["masked"] == emotion and r["emotion"] == emotion
                     and r["layers"] == layers_ and r["condition"] == "mask"), math.nan)
        layer_rows.append((emotion, layers_, pp(published, 2), pp(here)))
    return Table(("emotion", "layers", "paper 70B change (pp)", "this run change (pp)"),
                 tuple(layer_rows), "Own neurons masked in one layer range (Figure 4)",
                 (False, False, True, True))


def _not_comparable(run: RunMetrics, name: str, clear: bool) -> str:
    params = run.params
    reasons = []
    if "llama-3.1-8b" not in name.lower() and "llama-3.1-70b" not in name.lower():
        reasons.append(f"the model is `{name}`, not Llama-3.1-8B/70B-Instruct, so neuron counts, "
                       f"layers and accuracies belong to a different network")
    layers, width = run.neurons.layers, run.neurons.neurons_per_layer
    reasons.append(f"the scale differs: {layers * width:,} FFN neurons here against 458,752 (8B) "
                   f"and 2,293,760 (70B), and {count(run.eval.n_test)} test dialogues "
                   f"against about {PAPER_TEST_DIALOGUES:,}, so the CIs here are "
                   f"{'wide' if int(run.eval.n_test or 0) < 1000 else 'comparable'}")
    backend = params.generate.backend
    if backend == "template":
        reasons.append("the dialogues come from the offline `template` backend (phrase banks), "
                       "not from an LLM; the paper's 302,400 were written by gemini-1.5-flash and "
                       "kept when 3 of 4 labels agreed (three LLM judges)")
    else:
        reasons.append(f"the dialogues come from the `{backend}` backend ({data_source(params)}), "
                       f"not gemini-1.5-flash, and were filtered by other judges "
                       f"({', '.join(run.filter.get('judges') or [])}, "
                       f"min_agree {run.filter.get('min_agree')}) instead of three LLMs, 3 of 4")
    if int(run.eval.shots or 0) or run.eval.method != "generate":
        reasons.append(f"classification uses method `{run.eval.method}` with "
                       f"{run.eval.shots} shot(s) per emotion; the paper decodes zero-shot")
    if not clear:
        reasons.append("the unmodified model is not clearly above chance, so masking effects here "
                       "say nothing about emotion neurons")
    return ("This run is **not directly comparable** to the paper where: " + "; ".join(reasons)
            + ". The tables below put the numbers side by side; read shares and directions, not "
            "absolute values.")
