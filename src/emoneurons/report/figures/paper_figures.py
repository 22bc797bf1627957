"""Every figure of the paper for one run, from its metrics files, by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure

from emoneurons.io.eval_file import EvalFile
from emoneurons.io.neurons_file import NeuronsFile
from emoneurons.params import same_ratio
from emoneurons.report.figures.figure1 import figure1_per_layer
from emoneurons.report.figures.figure2 import figure2_effect, figure2_masking
from emoneurons.report.figures.figure3 import figure3_effect, figure3_ratio_sweep
from emoneurons.report.figures.figure4 import figure4_layer_sweep
from emoneurons.report.figures.figure14 import figure14_overlap
from emoneurons.report.figures.figure15 import figure15_failures
from emoneurons.report.figures.nulls import dose_response_figure, draw_null_figure
from emoneurons.report.figures.table1 import table1_figure
from emoneurons.report.results.accuracy import as_percent, rq2_view
from emoneurons.report.results.confusions import failure_counts, failure_distribution, masked_confusions
from emoneurons.report.results.effects import dose_rows, draw_null_rows, effect_rows
from emoneurons.report.results.neuron_sets import overlap_of, per_layer_counts
from emoneurons.report.results.sweeps import accuracy_changes, layer_sweep, layer_sweep_ratio, ratio_sweep

FIGURE_NAMES: tuple[str, ...] = (
    "table1", "figure1", "figure2", "figure2_effect", "figure3", "figure3_effect", "figure4", "figure14", "figure15",
    "draw_null", "dose_response",
)


def build_figures(
    filter_json: Mapping[str, Any], neurons: NeuronsFile,
    eval_json: EvalFile, subtitle: str = "",
) -> dict[str, Figure]:
    """Every figure of the paper for one run, by name (FIGURE_NAMES), and the stronger nulls'
    (a placeholder each when the run has none)."""
    top_rate = neurons.top_rate
    changes = accuracy_changes(eval_json)
    confusions, evaluated = masked_confusions(eval_json, top_rate)
    effects = effect_rows(eval_json)
    measure = (eval_json.effects or {}).get("test_effect", "")
    ratio_text = f"top {as_percent(top_rate):g}% of all FFN neurons"
    return {
        "table1": table1_figure(filter_json),
        "figure1": figure1_per_layer(per_layer_counts(neurons, top_rate),
                                     f"{subtitle}, {ratio_text}" if subtitle else ratio_text),
        "figure2": figure2_masking(rq2_view(eval_json, top_rate),
                                   f"{subtitle}, {ratio_text}, all layers" if subtitle else ratio_text),
        "figure2_effect": figure2_effect(
            [r for r in effects if r["layers"] == "all" and same_ratio(r["ratio"], top_rate)], measure,
            f"{subtitle}, {ratio_text}, all layers" if subtitle else f"{ratio_text}, all layers"),
        "figure3": figure3_ratio_sweep(ratio_sweep(changes), subtitle),
        "figure3_effect": figure3_effect([r for r in effects if r["layers"] == "all"], measure, subtitle),
        "figure4": figure4_layer_sweep(
            layer_sweep(changes, layer_sweep_ratio(changes, top_rate)), subtitle),
        "figure14": figure14_overlap(overlap_of(neurons, top_rate), ratio_text),
        "figure15": figure15_failures(failure_distribution(confusions), failure_counts(confusions),
                                      evaluated, f"{subtitle}, {ratio_text}" if subtitle else ratio_text),
        "draw_null": draw_null_figure(
            [r for r in draw_null_rows(eval_json) if r["layers"] == "all" and same_ratio(r["ratio"], top_rate)], measure,
            f"{subtitle}, {ratio_text}, all layers" if subtitle else f"{ratio_text}, all layers"),
        "dose_response": dose_response_figure(dose_rows(eval_json), measure,
                                              f"{subtitle}, {ratio_text}, all layers" if subtitle else f"{ratio_text}, all layers"),
    }
