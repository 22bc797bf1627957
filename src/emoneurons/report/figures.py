"""The paper's figures (Table 1, Figures 1-4, 14, 15) from the metrics, and the small views that turn
the metrics files (docs/CONTRACTS.md) into the plain data each figure draws.

Every figure function takes plain data (dicts, lists, tensors) and returns a matplotlib Figure made
without pyplot (no global state, nothing to close); `save_figure` writes it as PNG and SVG."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # never a window: stages and tests run headless

import matplotlib.ticker  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from emoneurons.emotions import EMOTIONS  # noqa: E402
from emoneurons.report.style import (  # noqa: E402
    CHANCE_COLOR,
    CONTROL_COLOR,
    CONTROL_HATCH,
    DPI,
    EMOTION_COLORS,
    EMOTION_MARKERS,
    LAYER_RANGE_LABELS,
    LAYER_RANGES,
    PANEL_GRID,
    UNMODIFIED_COLOR,
)

FIGURE_NAMES: tuple[str, ...] = (
    "table1", "figure1", "figure2", "figure2_effect", "figure3", "figure3_effect", "figure4", "figure14", "figure15",
)
EFFECT_LABELS = {"delta_masked": "Δ log p(masked emotion's label)", "masked_answer": "change in answering the masked emotion"}
OVERLAP_DEFINITION = "|A∩B| / |A∪B| (Jaccard index of the two neuron sets)"


class ReportDataError(ValueError):
    """A metrics file lacks what a figure or table needs; the message names the file and key."""


# --------------------------------------------------------------------------------------------
# Pure tensor functions


def neuron_membership(
    neurons: Mapping[str, Sequence[Sequence[int]]], layers: int, neurons_per_layer: int
) -> torch.Tensor:
    """Bool [6, layers * neurons_per_layer]: row e marks the neurons selected for emotion e."""
    membership = torch.zeros(len(EMOTIONS), layers * neurons_per_layer, dtype=torch.bool)
    for row, emotion in enumerate(EMOTIONS):
        pairs = torch.tensor(list(neurons.get(emotion, [])), dtype=torch.long).reshape(-1, 2)
        if pairs.numel() == 0:
            continue
        bad = (pairs[:, 0] < 0) | (pairs[:, 0] >= layers) | (pairs[:, 1] < 0) | (
            pairs[:, 1] >= neurons_per_layer
        )
        if bool(bad.any()):
            layer, index = pairs[bad][0].tolist()
            raise ReportDataError(
                f"neurons.{emotion}: neuron [{layer}, {index}] is outside "
                f"{layers} layers x {neurons_per_layer} neurons"
            )
        membership[row, pairs[:, 0] * neurons_per_layer + pairs[:, 1]] = True
    return membership


def overlap_ratio(sets: torch.Tensor) -> torch.Tensor:
    """Float64 [E, E] |A∩B| / |A∪B| between the rows of a bool membership tensor [E, ...].

    Two empty sets have overlap 0 (nothing is shared)."""
    flat = sets.reshape(sets.shape[0], -1).to(torch.float64)
    intersection = flat @ flat.T
    sizes = flat.sum(dim=1)
    union = sizes[:, None] + sizes[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1.0), torch.zeros_like(union))


def failure_counts(confusions: torch.Tensor) -> torch.Tensor:
    """Int [E]: failures of emotion m's test dialogues when m's neurons are masked.

    `confusions[m]` is the confusion matrix (rows true, columns predicted) of the condition that
    masks emotion m."""
    rows = torch.diagonal(confusions, dim1=0, dim2=1).T  # rows[m] = confusions[m, m, :]
    return rows.sum(dim=1) - torch.diagonal(rows)


def failure_distribution(confusions: torch.Tensor) -> torch.Tensor:
    """Float64 [E, E]: row m = where the misclassified dialogues of emotion m go when m's neurons
    are masked, as shares of those failures (diagonal 0; a row with no failures is all NaN).

    `confusions` is [E, E, E]: `confusions[m]` is the confusion matrix (rows = true emotion,
    columns = predicted) of the condition that masks emotion m."""
    rows = torch.diagonal(confusions, dim1=0, dim2=1).T.to(torch.float64)
    wrong = rows * (1 - torch.eye(rows.shape[0], dtype=torch.float64))
    totals = wrong.sum(dim=1, keepdim=True)
    return torch.where(totals > 0, wrong / totals.clamp_min(1.0), torch.full_like(wrong, math.nan))


# --------------------------------------------------------------------------------------------
# Views: metrics files -> what a figure draws


def ratio_key(ratio: float) -> str:
    """The key of a ratio in neurons.json (`f"{r:g}"`)."""
    return f"{ratio:g}"


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def selection_at(neurons_json: Mapping[str, Any], ratio: float) -> Mapping[str, Any]:
    """The selection of neurons.json at one ratio."""
    ratios = neurons_json.get("ratios") or {}
    key = ratio_key(ratio)
    if key not in ratios:
        raise ReportDataError(
            f"neurons.json: ratios has no {key!r} (has: {', '.join(sorted(ratios)) or 'none'})"
        )
    return ratios[key]


def per_layer_counts(neurons_json: Mapping[str, Any], ratio: float) -> dict[str, list[int]]:
    """Emotion neurons per layer per emotion at one ratio (paper order, zeros where absent)."""
    selected = selection_at(neurons_json, ratio)
    layers = int(neurons_json["layers"])
    per_layer = selected.get("per_layer") or {}
    counts = {}
    for emotion in EMOTIONS:
        row = [int(n) for n in per_layer.get(emotion, [0] * layers)]
        if len(row) != layers:
            raise ReportDataError(
                f"neurons.json: per_layer.{emotion} has {len(row)} entries, expected {layers}"
            )
        counts[emotion] = row
    return counts


def overlap_of(neurons_json: Mapping[str, Any], ratio: float) -> torch.Tensor:
    selected = selection_at(neurons_json, ratio)
    membership = neuron_membership(
        selected.get("neurons") or {}, int(neurons_json["layers"]),
        int(neurons_json["neurons_per_layer"]),
    )
    return overlap_ratio(membership)


def conditions(eval_json: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = eval_json.get("conditions")
    if not isinstance(found, list) or not found:
        raise ReportDataError("eval.json: conditions is missing or empty")
    return found


def _same_ratio(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def find_conditions(
    eval_json: Mapping[str, Any], kind: str, masked: str | None = None,
    ratio: float | None = None, layers: str | None = None,
) -> list[Mapping[str, Any]]:
    """Conditions of one kind, optionally of one masked emotion, ratio and layer range."""
    return [
        c for c in conditions(eval_json)
        if c.get("kind") == kind
        and (masked is None or c.get("masked") == masked)
        and (ratio is None or _same_ratio(c.get("ratio"), ratio))
        and (layers is None or c.get("layers") == layers)
    ]


def unmodified_condition(eval_json: Mapping[str, Any]) -> Mapping[str, Any]:
    found = find_conditions(eval_json, "unmodified")
    if not found:
        raise ReportDataError("eval.json: no condition of kind 'unmodified'")
    return found[0]


def accuracy_of(condition: Mapping[str, Any]) -> dict[str, float]:
    accuracy = condition.get("accuracy") or {}
    return {key: _number(accuracy.get(key)) for key in (*EMOTIONS, "overall")}


def ci_of(condition: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    ci = condition.get("ci95") or {}
    out = {}
    for key in (*EMOTIONS, "overall"):
        low, high = ci.get(key) or (None, None)
        out[key] = (_number(low), _number(high))
    return out


def _mean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def control_mean(controls: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Accuracy per emotion averaged over the control draws (NaN when there are none)."""
    accuracies = [accuracy_of(c) for c in controls]
    return {key: _mean(a[key] for a in accuracies) for key in (*EMOTIONS, "overall")}


def rq2_view(eval_json: Mapping[str, Any], ratio: float) -> dict[str, Any]:
    """What Figure 2 draws: unmodified, each emotion's neurons masked (all layers, `ratio`), and the
    random-neuron control of each; masked/control hold only the emotions that were evaluated.

    {"unmodified": {"accuracy": {e: a}, "ci95": {e: (lo, hi)}},
     "masked": {m: {"accuracy": ..., "ci95": ...}}, "control": {m: {e: mean accuracy}},
     "control_draws": {m: n}, "n_per_emotion": {e: n}, "chance": c, "ratio": ratio}"""
    base = unmodified_condition(eval_json)
    view: dict[str, Any] = {
        "unmodified": {"accuracy": accuracy_of(base), "ci95": ci_of(base)},
        "masked": {}, "control": {}, "control_draws": {},
        "n_per_emotion": dict(eval_json.get("n_per_emotion") or {}),
        "chance": float(eval_json.get("chance") or 1 / len(EMOTIONS)),
        "ratio": ratio,
    }
    for emotion in EMOTIONS:
        masked = find_conditions(eval_json, "mask", emotion, ratio, "all")
        if masked:
            view["masked"][emotion] = {"accuracy": accuracy_of(masked[0]), "ci95": ci_of(masked[0])}
        controls = find_conditions(eval_json, "control", emotion, ratio, "all")
        if controls:
            view["control"][emotion] = control_mean(controls)
            view["control_draws"][emotion] = len(controls)
    return view


def _pair(values: Any) -> tuple[float, float]:
    low, high = values if isinstance(values, (list, tuple)) and len(values) == 2 else (None, None)
    return (_number(low), _number(high))


def effect_rows(eval_json: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per masked condition with a paired effect (eval.json's `effect` / `vs_control`; []
    for runs written before them): the test effect's mean and CI, the controls' (CI of the mean
    over dialogues when there is one draw, NaN otherwise), the corrected p-values and the verdict.

    Row: {"masked", "ratio", "layers", "n_neurons", "effect", "effect_ci", "control",
          "control_ci", "difference", "difference_ci", "p", "p_holm", "p_bh", "verdict"}"""
    summary = eval_json.get("effects") or {}
    key = summary.get("test_effect")
    if not key:
        return []
    by_id = {c.get("id"): c for c in conditions(eval_json)}
    rows = []
    for c in conditions(eval_json):
        if c.get("kind") != "mask" or "vs_control" not in c:
            continue
        own = (c.get("effect") or {}).get(key) or {}
        tested = c["vs_control"]
        controls = [by_id[cid] for cid in by_id if cid and cid.startswith(f"control{c['id'].removeprefix('mask')}-d")]
        control_effects = [((d.get("effect") or {}).get(key) or {}) for d in controls]
        rows.append({
            "masked": c.get("masked"), "ratio": float(c["ratio"]), "layers": c.get("layers"),
            "n_neurons": c.get("n_neurons"),
            "effect": _number(own.get("mean")), "effect_ci": _pair(own.get("ci95")),
            "control": _number(tested.get("control_mean")),
            "control_ci": _pair(control_effects[0].get("ci95")) if len(control_effects) == 1 else (math.nan, math.nan),
            "difference": _number(tested.get("difference")), "difference_ci": _pair(tested.get("difference_ci95")),
            "p": _number(tested.get("p")), "p_holm": _number(tested.get("p_holm")), "p_bh": _number(tested.get("p_bh")),
            "verdict": tested.get("verdict"),
        })
    return rows


def accuracy_changes(eval_json: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Long rows, one per (condition, evaluated emotion): accuracy change in percentage points
    against unmodified. Controls are averaged over their draws (condition "control").

    Row: {"ratio", "layers", "masked", "emotion", "condition": "mask"|"control",
          "accuracy", "accuracy_change"}"""
    base = accuracy_of(unmodified_condition(eval_json))
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for c in conditions(eval_json):
        if c.get("kind") not in ("mask", "control"):
            continue
        key = (c["kind"], c.get("masked"), float(c["ratio"]), c.get("layers"))
        groups.setdefault(key, []).append(c)
    rows = []
    order = {e: i for i, e in enumerate(EMOTIONS)}
    ranges = {r: i for i, r in enumerate(LAYER_RANGES)}
    for kind, masked, ratio, layers in sorted(
        groups, key=lambda k: (order.get(k[1], 99), k[2], ranges.get(k[3], 99), k[0] != "mask")
    ):
        accuracy = control_mean(groups[(kind, masked, ratio, layers)])
        for emotion in EMOTIONS:
            rows.append({
                "ratio": ratio, "layers": layers, "masked": masked, "emotion": emotion,
                "condition": kind, "accuracy": accuracy[emotion],
                "accuracy_change": 100.0 * (accuracy[emotion] - base[emotion]),
            })
    return rows


def ratio_sweep(changes: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows of Figure 3: all layers masked, every ratio."""
    return [r for r in changes if r["layers"] == "all"]


def layer_sweep_ratio(changes: Sequence[Mapping[str, Any]], top_rate: float) -> float | None:
    """The ratio the layer-range conditions were run at: `top_rate` when it has them, else the
    smallest ratio that has a range other than all."""
    partial = sorted({r["ratio"] for r in changes if r["layers"] != "all"})
    if not partial:
        return top_rate if any(_same_ratio(r["ratio"], top_rate) for r in changes) else None
    return top_rate if any(_same_ratio(p, top_rate) for p in partial) else partial[0]


def layer_sweep(changes: Sequence[Mapping[str, Any]], ratio: float | None) -> list[Mapping[str, Any]]:
    """The rows of Figure 4: every layer range at one ratio."""
    if ratio is None:
        return []
    return [r for r in changes if _same_ratio(r["ratio"], ratio)]


def masked_confusions(eval_json: Mapping[str, Any], ratio: float) -> tuple[torch.Tensor, list[bool]]:
    """Int [6, 6, 6]: confusion of the condition masking each emotion (all layers, `ratio`), and
    which emotions had such a condition (zeros where not)."""
    size = len(EMOTIONS)
    out = torch.zeros(size, size, size, dtype=torch.long)
    evaluated = []
    for m, emotion in enumerate(EMOTIONS):
        found = find_conditions(eval_json, "mask", emotion, ratio, "all")
        evaluated.append(bool(found))
        if found:
            out[m] = confusion_of(found[0])
    return out, evaluated


def confusion_of(condition: Mapping[str, Any]) -> torch.Tensor:
    matrix = torch.tensor(condition.get("confusion") or [], dtype=torch.long)
    if matrix.shape != (len(EMOTIONS), len(EMOTIONS)):
        raise ReportDataError(
            f"eval.json: condition {condition.get('id')!r}: confusion has shape "
            f"{tuple(matrix.shape)}, expected 6 x 6"
        )
    return matrix


# --------------------------------------------------------------------------------------------
# Drawing


def new_figure(width: float, height: float) -> Figure:
    """A figure of a fixed pixel size (width*DPI x height*DPI) that lays itself out."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def as_percent(value: float) -> float:
    return 100.0 * value


def panel_axes(figure: Figure) -> list[Axes]:
    rows, cols = PANEL_GRID
    axes = figure.subplots(rows, cols, sharey=True, squeeze=False)
    return [axes[i // cols][i % cols] for i in range(len(EMOTIONS))]


def _emotion_handles(emotions: Sequence[str] = EMOTIONS) -> list[Patch]:
    return [Patch(facecolor=EMOTION_COLORS[e], label=e) for e in emotions]


def table1_figure(filter_json: Mapping[str, Any]) -> Figure:
    """Table 1 as bars: dialogues kept per emotion after filtering (with their share), and the
    dropped ones stacked after them."""
    table = filter_json.get("table1") or {}
    dropped = filter_json.get("dropped_per_emotion") or {}
    kept_counts = [int((table.get(e) or {}).get("count", 0)) for e in EMOTIONS]
    percents = [float((table.get(e) or {}).get("percent", 0.0)) for e in EMOTIONS]
    dropped_counts = [int(dropped.get(e, 0)) for e in EMOTIONS]
    figure = new_figure(9, 4.8)
    ax = figure.subplots()
    y = list(range(len(EMOTIONS)))
    colors = [EMOTION_COLORS[e] for e in EMOTIONS]
    ax.barh(y, kept_counts, color=colors, label="kept")
    ax.barh(y, dropped_counts, left=kept_counts, color=colors, alpha=0.3, hatch="//",
            edgecolor="white", label="dropped by the filter")
    widest = max([k + d for k, d in zip(kept_counts, dropped_counts)] + [1])
    for row, (kept, percent, drop) in enumerate(zip(kept_counts, percents, dropped_counts)):
        ax.text(kept + drop + widest * 0.01, row, f"{kept:,} kept ({percent:.2f}%), {drop:,} dropped",
                va="center", fontsize=9)
    ax.set_yticks(y, EMOTIONS)
    ax.invert_yaxis()  # paper order from the top
    ax.set_xlim(0, widest * 1.45)
    ax.set_xlabel("dialogues (count)")
    ax.set_ylabel("intended emotion")
    kept_total = int((table.get("total") or {}).get("count", sum(kept_counts)))
    generated = int(filter_json.get("generated", kept_total + sum(dropped_counts)))
    ax.set_title(
        f"Table 1: dialogues kept per emotion after filtering\n"
        f"{kept_total:,} of {generated:,} generated kept "
        f"(at least {filter_json.get('min_agree', '?')} agreeing labels)"
    )
    figure.legend(handles=[
        Patch(facecolor="#777777", label="kept"),
        Patch(facecolor="#777777", alpha=0.3, hatch="//", edgecolor="white",
              label="dropped by the filter"),
    ], loc="outside lower center", ncols=2)
    ax.grid(axis="x", alpha=0.3)
    return figure


def figure1_per_layer(per_layer: Mapping[str, Sequence[int]], subtitle: str = "") -> Figure:
    """Figure 1: emotion neurons per layer, one line per emotion."""
    figure = new_figure(10, 5.5)
    ax = figure.subplots()
    for emotion in EMOTIONS:
        counts = list(per_layer.get(emotion, []))
        ax.plot(range(len(counts)), counts, color=EMOTION_COLORS[emotion],
                marker=EMOTION_MARKERS[emotion], markersize=5, linewidth=1.8, alpha=0.9,
                label=f"{emotion} ({sum(counts):,})")
    ax.set_xlabel("layer (0 = first)")
    ax.set_ylabel("emotion neurons in the layer (count)")
    ax.set_title("Figure 1: emotion neurons per layer" + (f"\n{subtitle}" if subtitle else ""))
    ax.legend(title="emotion (total neurons)", ncols=2, fontsize=9)
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.yaxis.get_major_locator().set_params(integer=True)
    return figure


def format_target_panel(ax: Any, target: str, suffix: str = "") -> None:
    """One Figure 2 panel: the target's title, the unmodified + six masked slots, 0-100% axis."""
    ax.set_title(f"target: {target}{suffix}", color=EMOTION_COLORS[target], fontweight="bold")
    ax.set_xticks(range(len(EMOTIONS) + 1), ["unmodified", *EMOTIONS], rotation=35, ha="right")
    ax.set_ylim(0, 108)
    ax.grid(axis="y", alpha=0.3)


def label_panel_grid(axes: Any) -> None:
    """Axis labels on the outer panels of Figure 2's grid only."""
    for ax in axes[:: PANEL_GRID[1]]:
        ax.set_ylabel("accuracy on the target (%)")
    for ax in axes[-PANEL_GRID[1]:]:
        ax.set_xlabel("neurons masked")


def figure2_masking(view: Mapping[str, Any], subtitle: str = "") -> Figure:
    """Figure 2: per target emotion, accuracy unmodified vs with each emotion's neurons masked
    (95% Clopper-Pearson CI), the random-neuron control beside each masked bar."""
    figure = new_figure(15, 8.5)
    axes = panel_axes(figure)
    base, masked, control = view["unmodified"], view["masked"], view["control"]
    chance = as_percent(view.get("chance", 1 / len(EMOTIONS)))
    width = 0.4
    for ax, target in zip(axes, EMOTIONS):
        value = as_percent(base["accuracy"][target])
        low, high = (as_percent(v) for v in base["ci95"][target])
        ax.bar(0, value, width * 1.6, color=UNMODIFIED_COLOR,
               yerr=_yerr(value, low, high), capsize=3, ecolor="black")
        for slot, emotion in enumerate(EMOTIONS, start=1):
            if emotion in masked:
                value = as_percent(masked[emotion]["accuracy"][target])
                low, high = (as_percent(v) for v in masked[emotion]["ci95"][target])
                ax.bar(slot - width / 2, value, width, color=EMOTION_COLORS[emotion],
                       edgecolor="black" if emotion == target else "none",
                       linewidth=1.5 if emotion == target else 0,
                       yerr=_yerr(value, low, high), capsize=2, ecolor="black")
            if emotion in control:
                ax.bar(slot + width / 2, as_percent(control[emotion][target]), width,
                       color=CONTROL_COLOR, hatch=CONTROL_HATCH, edgecolor=EMOTION_COLORS[emotion])
        ax.axhline(chance, color=CHANCE_COLOR, linestyle=":", linewidth=1)
        n = (view.get("n_per_emotion") or {}).get(target)
        format_target_panel(ax, target, f" (n = {n} test dialogues)" if n is not None else "")
        for label, emotion in zip(ax.get_xticklabels()[1:], EMOTIONS):
            label.set_color(EMOTION_COLORS[emotion])
    label_panel_grid(axes)
    draws = sorted(set((view.get("control_draws") or {}).values()))
    draw_text = f"mean of {draws[0]} draw{'s' if draws[0] != 1 else ''}" if len(draws) == 1 else "mean of draws"
    handles = [
        Patch(facecolor=UNMODIFIED_COLOR, label="unmodified"),
        *[Patch(facecolor=EMOTION_COLORS[e], label=f"{e} neurons masked") for e in EMOTIONS],
        Patch(facecolor=CONTROL_COLOR, hatch=CONTROL_HATCH, edgecolor="black",
              label=f"random neurons masked, same count per layer ({draw_text})"),
        Patch(facecolor="white", edgecolor="black", linewidth=1.5, label="target's own neurons masked"),
        Line2D([], [], color="black", marker="|", linestyle="none", markersize=10, label="95% CI (Clopper-Pearson)"),
        Line2D([], [], color=CHANCE_COLOR, linestyle=":", label=f"chance ({chance:.1f}%)"),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=9)
    figure.suptitle("Figure 2: accuracy per target emotion, unmodified vs each emotion's neurons masked"
                    + (f"\n{subtitle}" if subtitle else ""))
    return figure


def _yerr(value: float, low: float, high: float) -> list[list[float]] | None:
    if any(math.isnan(v) for v in (value, low, high)):
        return None
    return [[max(value - low, 0.0)], [max(high - value, 0.0)]]


def rows_matching(rows: Iterable[Mapping[str, Any]], **match: Any) -> list[Mapping[str, Any]]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def figure3_ratio_sweep(rows: Sequence[Mapping[str, Any]], subtitle: str = "") -> Figure:
    """Figure 3: per masked emotion, accuracy change (pp) of that emotion (thick) and of the others
    (thin) as the masking ratio grows; the random-neuron control of the target dashed."""
    figure = new_figure(15, 8.5)
    axes = panel_axes(figure)
    ratios = sorted({float(r["ratio"]) for r in rows})
    for ax, masked in zip(axes, EMOTIONS):
        for emotion in EMOTIONS:
            line = sorted(rows_matching(rows, masked=masked, emotion=emotion, condition="mask"),
                          key=lambda r: r["ratio"])
            if not line:
                continue
            own = emotion == masked
            ax.plot([as_percent(r["ratio"]) for r in line], [r["accuracy_change"] for r in line],
                    color=EMOTION_COLORS[emotion], linewidth=2.8 if own else 1.1,
                    alpha=1.0 if own else 0.6, marker=EMOTION_MARKERS[emotion],
                    markersize=7 if own else 4, zorder=3 if own else 2)
        control = sorted(rows_matching(rows, masked=masked, emotion=masked, condition="control"),
                         key=lambda r: r["ratio"])
        if control:
            ax.plot([as_percent(r["ratio"]) for r in control], [r["accuracy_change"] for r in control],
                    color=CONTROL_COLOR, linestyle="--", linewidth=1.8, marker="x", zorder=2)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(f"{masked} neurons masked", color=EMOTION_COLORS[masked], fontweight="bold")
        ax.set_xticks([as_percent(r) for r in ratios], [f"{as_percent(r):g}%" for r in ratios])
        ax.grid(alpha=0.3)
    for ax in axes[:: PANEL_GRID[1]]:
        ax.set_ylabel("accuracy change vs unmodified (pp)")
    for ax in axes[-PANEL_GRID[1]:]:
        ax.set_xlabel("masking ratio (% of all FFN neurons)")
    handles = [
        *[Line2D([], [], color=EMOTION_COLORS[e], marker=EMOTION_MARKERS[e], linewidth=2, label=e)
          for e in EMOTIONS],
        Line2D([], [], color="black", linewidth=2.8, label="the masked emotion itself"),
        Line2D([], [], color="black", linewidth=1.1, alpha=0.6, label="other emotions"),
        Line2D([], [], color=CONTROL_COLOR, linestyle="--", marker="x",
               label="random-neuron control (masked emotion)"),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=9, fontsize=9)
    figure.suptitle("Figure 3: accuracy change as the masking ratio grows (all layers)"
                    + (f"\n{subtitle}" if subtitle else ""))
    return figure


def _no_effects(figure: Figure, title: str) -> Figure:
    ax = figure.subplots()
    ax.text(0.5, 0.5, "no paired effects in this eval.json (written before they were measured)", ha="center", va="center")
    ax.set_axis_off()
    figure.suptitle(title)
    return figure


def _effect_errorbar(ax: Any, x: float, value: float, ci: tuple[float, float], **style: Any) -> None:
    ax.errorbar([x], [value], yerr=_yerr(value, *ci), linestyle="none", capsize=3, **style)


SPECIFIC_MARKER = {"marker": "*", "color": "black", "markersize": 13, "linestyle": "none"}


def figure2_effect(rows: Sequence[Mapping[str, Any]], measure: str, subtitle: str = "") -> Figure:
    """Figure 2, continuous variant: per masked emotion, its test effect (mean over the test
    dialogues, paired bootstrap 95% CI) beside its random controls' (hatched), a star where the
    Holm-corrected sign-flip test finds the emotion's neurons specific."""
    title = "Figure 2 (effect): each emotion's neurons masked vs random neurons, paired per dialogue"
    figure = new_figure(12, 6)
    if not rows:
        return _no_effects(figure, title)
    ax = figure.subplots()
    width = 0.38
    tops = []
    for slot, emotion in enumerate(EMOTIONS):
        found = rows_matching(rows, masked=emotion)
        if not found:
            continue
        row = found[0]
        ax.bar(slot - width / 2, row["effect"], width, color=EMOTION_COLORS[emotion], label=f"{emotion} neurons masked")
        _effect_errorbar(ax, slot - width / 2, row["effect"], row["effect_ci"], color="black")
        if not math.isnan(row["control"]):
            ax.bar(slot + width / 2, row["control"], width, color=CONTROL_COLOR, hatch=CONTROL_HATCH,
                   edgecolor=EMOTION_COLORS[emotion], label="_control")
            _effect_errorbar(ax, slot + width / 2, row["control"], row["control_ci"], color="dimgray")
        low = min(v for v in (row["effect"], row["effect_ci"][0], row["control"], 0.0) if not math.isnan(v))
        tops.append(low)
        if row["verdict"] == "specific":
            ax.plot([slot - width / 2], [low], gid=f"specific-{emotion}", **SPECIFIC_MARKER)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS)
    for label, emotion in zip(ax.get_xticklabels(), EMOTIONS):
        label.set_color(EMOTION_COLORS[emotion])
    ax.set_xlabel("masked emotion")
    ax.set_ylabel(f"{EFFECT_LABELS.get(measure, measure)} vs unmodified")
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.15)
    handles = [
        *[Patch(facecolor=EMOTION_COLORS[e], label=f"{e} neurons masked") for e in EMOTIONS],
        Patch(facecolor=CONTROL_COLOR, hatch=CONTROL_HATCH, edgecolor="black", label="random neurons, same count per layer"),
        Line2D([], [], color="black", marker="|", linestyle="none", markersize=10, label="95% CI (paired bootstrap)"),
        Line2D([], [], label="specific: Holm-corrected sign-flip test vs random, p ≤ 0.05", **SPECIFIC_MARKER),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9)
    figure.suptitle(title + (f"\n{subtitle}" if subtitle else ""))
    return figure


def figure3_effect(rows: Sequence[Mapping[str, Any]], measure: str, subtitle: str = "") -> Figure:
    """Figure 3, continuous variant: per masked emotion, its test effect (95% CI) over the masking
    ratios (all layers), its random controls' dashed, stars where the corrected test passes."""
    title = "Figure 3 (effect): masking ratio, emotion neurons vs random neurons (all layers)"
    figure = new_figure(15, 8.5)
    if not rows:
        return _no_effects(figure, title)
    axes = panel_axes(figure)
    ratios = sorted({r["ratio"] for r in rows})
    for ax, masked in zip(axes, EMOTIONS):
        line = sorted(rows_matching(rows, masked=masked), key=lambda r: r["ratio"])
        xs = [as_percent(r["ratio"]) for r in line]
        if line:
            ax.errorbar(xs, [r["effect"] for r in line], color=EMOTION_COLORS[masked], linewidth=2.2,
                        marker=EMOTION_MARKERS[masked], capsize=3, gid="effect",
                        yerr=[[max(r["effect"] - r["effect_ci"][0], 0.0) if not math.isnan(r["effect_ci"][0]) else 0.0 for r in line],
                              [max(r["effect_ci"][1] - r["effect"], 0.0) if not math.isnan(r["effect_ci"][1]) else 0.0 for r in line]])
            ax.plot(xs, [r["control"] for r in line], color=CONTROL_COLOR, linestyle="--", marker="x", gid="control")
            stars = [(x, r["effect"]) for x, r in zip(xs, line) if r["verdict"] == "specific"]
            if stars:
                ax.plot([x for x, _ in stars], [y for _, y in stars], gid="specific", zorder=4, **SPECIFIC_MARKER)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(f"{masked} neurons masked", color=EMOTION_COLORS[masked], fontweight="bold")
        ax.set_xticks([as_percent(r) for r in ratios], [f"{as_percent(r):g}%" for r in ratios])
        ax.grid(alpha=0.3)
    for ax in axes[:: PANEL_GRID[1]]:
        ax.set_ylabel(EFFECT_LABELS.get(measure, measure))
    for ax in axes[-PANEL_GRID[1]:]:
        ax.set_xlabel("masking ratio (% of all FFN neurons)")
    handles = [
        Line2D([], [], color="black", linewidth=2.2, marker="o", label="the masked emotion's neurons (95% CI, paired bootstrap)"),
        Line2D([], [], color=CONTROL_COLOR, linestyle="--", marker="x", label="random neurons, same count per layer"),
        Line2D([], [], label="specific (Holm-corrected sign-flip test vs random, p ≤ 0.05)", **SPECIFIC_MARKER),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9)
    figure.suptitle(title + (f"\n{subtitle}" if subtitle else ""))
    return figure


def figure4_layer_sweep(rows: Sequence[Mapping[str, Any]], subtitle: str = "") -> Figure:
    """Figure 4: accuracy change (pp) of each emotion when its own neurons are masked in the bottom,
    middle or top third of the layers or in all; the random-neuron control marked on each bar."""
    figure = new_figure(12, 6)
    ax = figure.subplots()
    width = 0.8 / len(EMOTIONS)
    present = [r for r in LAYER_RANGES if rows_matching(rows, layers=r)]
    for slot, emotion in enumerate(EMOTIONS):
        offset = (slot - (len(EMOTIONS) - 1) / 2) * width
        for group, layers in enumerate(present):
            masked = rows_matching(rows, masked=emotion, emotion=emotion, layers=layers, condition="mask")
            if masked:
                ax.bar(group + offset, masked[0]["accuracy_change"], width,
                       color=EMOTION_COLORS[emotion])
            control = rows_matching(rows, masked=emotion, emotion=emotion, layers=layers,
                                condition="control")
            if control:
                ax.plot(group + offset, control[0]["accuracy_change"], marker="D", markersize=5,
                        color=CONTROL_COLOR, markeredgecolor="black", linestyle="none", zorder=3)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(present)), [LAYER_RANGE_LABELS[r] for r in present])
    ax.set_xlabel("layers whose emotion neurons are masked")
    ax.set_ylabel("accuracy change of the masked emotion vs unmodified (pp)")
    ratio = next((r["ratio"] for r in rows), None)
    ratio_text = f" (masking ratio {as_percent(ratio):g}%)" if ratio is not None else ""
    ax.set_title(f"Figure 4: accuracy change by layer range{ratio_text}"
                 + (f"\n{subtitle}" if subtitle else ""))
    handles = [
        *_emotion_handles(),
        Line2D([], [], marker="D", color=CONTROL_COLOR, markeredgecolor="black", linestyle="none",
               label="random-neuron control"),
    ]
    figure.legend(handles=handles, title="masked = evaluated\nemotion", loc="outside right upper",
                  fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    values = [float(r["accuracy_change"]) for r in rows
              if r["masked"] == r["emotion"] and not math.isnan(float(r["accuracy_change"]))]
    low, high = min(values + [0.0]), max(values + [0.0])
    pad = 0.08 * ((high - low) or 1.0)
    ax.set_ylim(low - pad, high + pad)  # bars stick to 0 otherwise, hiding markers at 0
    return figure


def draw_heatmap(
    ax: Axes, matrix: torch.Tensor, cmap: str, colorbar_label: str, figure: Figure,
    hidden: torch.Tensor | None = None, row_labels: Sequence[str] = EMOTIONS,
    col_labels: Sequence[str] = EMOTIONS, empty_rows: Sequence[bool] | None = None,
    colorbar: bool = True,
) -> None:
    """A 0-1 heatmap annotated in percent; `hidden` cells show '—', `empty_rows` read 'none'."""
    values = matrix.to(torch.float64).clone()
    if hidden is not None:
        values[hidden] = math.nan
    shown = values.numpy()
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="#E6E6E6")
    image = ax.imshow(shown, cmap=colormap, vmin=0.0, vmax=1.0)
    for i in range(shown.shape[0]):
        for j in range(shown.shape[1]):
            value = shown[i, j]
            if math.isnan(value):
                text = "none" if empty_rows is not None and empty_rows[i] and (
                    hidden is None or not bool(hidden[i, j])) else "—"
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color="#6E6E6E")
            else:
                ax.text(j, i, f"{100 * value:.0f}%", ha="center", va="center", fontsize=9,
                        color="white" if value > 0.6 else "black")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=35, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    for label, emotion in zip(ax.get_xticklabels(), EMOTIONS):
        label.set_color(EMOTION_COLORS[emotion])
    for label, emotion in zip(ax.get_yticklabels(), EMOTIONS):
        label.set_color(EMOTION_COLORS[emotion])
    if colorbar:
        bar = figure.colorbar(image, ax=ax, shrink=0.8)
        bar.set_label(colorbar_label)
        bar.ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(xmax=1.0))


def figure14_overlap(overlap: torch.Tensor, subtitle: str = "") -> Figure:
    """Figure 14: overlap ratio |A∩B|/|A∪B| between the emotions' neuron sets."""
    figure = new_figure(7.5, 6.5)
    ax = figure.subplots()
    draw_heatmap(ax, overlap, "Blues", "overlap ratio |A∩B| / |A∪B|", figure)
    ax.set_xlabel("comparison emotion (B)")
    ax.set_ylabel("reference emotion (A)")
    ax.set_title("Figure 14: overlap of emotion neuron sets\n|A∩B| / |A∪B| (Jaccard)"
                 + (f", {subtitle}" if subtitle else ""))
    return figure


def figure15_failures(
    distribution: torch.Tensor, failures: torch.Tensor | None = None,
    evaluated: Sequence[bool] | None = None, subtitle: str = "",
) -> Figure:
    """Figure 15: where the masked emotion's misclassified dialogues go (shares within failures)."""
    figure = new_figure(8, 6.5)
    ax = figure.subplots()
    size = len(EMOTIONS)
    empty = [bool(torch.isnan(distribution[i]).all()) for i in range(size)]
    labels = []
    for i, emotion in enumerate(EMOTIONS):
        if evaluated is not None and not evaluated[i]:
            labels.append(f"{emotion}\n(not evaluated)")
        elif failures is not None:
            n = int(failures[i])
            labels.append(f"{emotion}\n({n} failure{'s' if n != 1 else ''})")
        else:
            labels.append(emotion)
    draw_heatmap(ax, distribution, "Reds", "share of the masked emotion's failures", figure,
                 hidden=torch.eye(size, dtype=torch.bool), row_labels=labels, empty_rows=empty)
    ax.set_xlabel("wrongly predicted emotion")
    ax.set_ylabel("masked emotion (= true emotion of the dialogues)")
    ax.set_title("Figure 15: misclassifications after masking, within failures only\n"
                 "(each row sums to 100%; 'none' = no failures)"
                 + (f"\n{subtitle}" if subtitle else ""))
    return figure


# --------------------------------------------------------------------------------------------
# One run: every figure, and the dvc plots data behind them


def top_rate_of(neurons_json: Mapping[str, Any]) -> float:
    if "top_rate" not in neurons_json:
        raise ReportDataError("neurons.json: top_rate is missing")
    return float(neurons_json["top_rate"])


def build_figures(
    filter_json: Mapping[str, Any], neurons_json: Mapping[str, Any],
    eval_json: Mapping[str, Any], subtitle: str = "",
) -> dict[str, Figure]:
    """Every figure of the paper for one run, by name (FIGURE_NAMES)."""
    top_rate = top_rate_of(neurons_json)
    changes = accuracy_changes(eval_json)
    confusions, evaluated = masked_confusions(eval_json, top_rate)
    effects = effect_rows(eval_json)
    measure = (eval_json.get("effects") or {}).get("test_effect", "")
    ratio_text = f"top {as_percent(top_rate):g}% of all FFN neurons"
    return {
        "table1": table1_figure(filter_json),
        "figure1": figure1_per_layer(per_layer_counts(neurons_json, top_rate),
                                     f"{subtitle}, {ratio_text}" if subtitle else ratio_text),
        "figure2": figure2_masking(rq2_view(eval_json, top_rate),
                                   f"{subtitle}, {ratio_text}, all layers" if subtitle else ratio_text),
        "figure2_effect": figure2_effect(
            [r for r in effects if r["layers"] == "all" and _same_ratio(r["ratio"], top_rate)], measure,
            f"{subtitle}, {ratio_text}, all layers" if subtitle else f"{ratio_text}, all layers"),
        "figure3": figure3_ratio_sweep(ratio_sweep(changes), subtitle),
        "figure3_effect": figure3_effect([r for r in effects if r["layers"] == "all"], measure, subtitle),
        "figure4": figure4_layer_sweep(
            layer_sweep(changes, layer_sweep_ratio(changes, top_rate)), subtitle),
        "figure14": figure14_overlap(overlap_of(neurons_json, top_rate), ratio_text),
        "figure15": figure15_failures(failure_distribution(confusions), failure_counts(confusions),
                                      evaluated, f"{subtitle}, {ratio_text}" if subtitle else ratio_text),
    }


def _round(value: float, digits: int = 4) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def confusion_rows(matrix: torch.Tensor) -> list[dict[str, str]]:
    """One {"actual", "predicted"} row per test dialogue (what DVC's confusion template counts)."""
    rows = []
    for i, actual in enumerate(EMOTIONS):
        for j, predicted in enumerate(EMOTIONS):
            rows.extend({"actual": actual, "predicted": predicted} for _ in range(int(matrix[i, j])))
    return rows


def plots_data(neurons_json: Mapping[str, Any], eval_json: Mapping[str, Any]) -> dict[str, Any]:
    """The files of reports/plots/ by relative path: lists of row dicts (written as CSV when the
    name ends in .csv, as JSON otherwise). Long files hold every number; the *_wide/_target files
    have one column per emotion because DVC colours a plot by column, not by a column's values."""
    top_rate = top_rate_of(neurons_json)
    per_layer = per_layer_counts(neurons_json, top_rate)
    layers = int(neurons_json["layers"])
    changes = accuracy_changes(eval_json)
    sweep = ratio_sweep(changes)
    layer_rows = layer_sweep(changes, layer_sweep_ratio(changes, top_rate))
    files: dict[str, Any] = {
        "per_layer.csv": [
            {"layer": layer, "emotion": e, "neurons": per_layer[e][layer]}
            for layer in range(layers) for e in EMOTIONS
        ],
        "per_layer_wide.csv": [
            {"layer": layer, **{e: per_layer[e][layer] for e in EMOTIONS}} for layer in range(layers)
        ],
        "ratio_sweep.csv": [
            {"ratio": r["ratio"], "masked": r["masked"], "emotion": r["emotion"],
             "condition": r["condition"], "accuracy_change": _round(r["accuracy_change"], 3)}
            for r in sweep
        ],
        "ratio_sweep_target.csv": [
            {"ratio_percent": round(as_percent(ratio), 6), **{
                e: _round(next((r["accuracy_change"] for r in rows_matching(
                    sweep, masked=e, emotion=e, condition="mask") if _same_ratio(r["ratio"], ratio)),
                    math.nan), 3)
                for e in EMOTIONS}}
            for ratio in sorted({r["ratio"] for r in sweep})
        ],
        "layer_sweep.csv": [
            {"layers": r["layers"], "masked": r["masked"], "emotion": r["emotion"],
             "condition": r["condition"], "ratio": r["ratio"],
             "accuracy_change": _round(r["accuracy_change"], 3)}
            for r in layer_rows
        ],
        "layer_sweep_target.csv": [
            {"label": f"{e} / {layers_}", "masked": e, "layers": layers_,
             "accuracy_change": _round(masked[0]["accuracy_change"], 3),
             "control_change": _round(control[0]["accuracy_change"], 3) if control else None}
            for e in EMOTIONS for layers_ in LAYER_RANGES
            if (masked := rows_matching(layer_rows, masked=e, emotion=e, layers=layers_, condition="mask"))
            for control in [rows_matching(layer_rows, masked=e, emotion=e, layers=layers_,
                                      condition="control")]
        ],
        "confusion/unmodified.json": confusion_rows(confusion_of(unmodified_condition(eval_json))),
    }
    for emotion in EMOTIONS:
        found = find_conditions(eval_json, "mask", emotion, top_rate, "all")
        if found:
            files[f"confusion/mask-{emotion}.json"] = confusion_rows(confusion_of(found[0]))
    return files


def write_plots_data(directory: str | Path, files: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Write plots_data() under `directory` (a folder the caller replaces atomically)."""
    import csv
    import json

    directory = Path(directory)
    for name, rows in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".csv"):
            columns = list(rows[0]) if rows else []
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        else:
            path.write_text(json.dumps(list(rows)) + "\n")
