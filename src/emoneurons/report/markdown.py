"""report.md: the run, its baseline, every number behind the figures, and the run set beside the
paper's published numbers. Built as a list of blocks so the offline HTML page shows the same."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.params import Params
from emoneurons.report.figures import (
    OVERLAP_DEFINITION,
    accuracy_changes,
    accuracy_of,
    failure_counts,
    failure_distribution,
    layer_sweep,
    layer_sweep_ratio,
    masked_confusions,
    overlap_of,
    per_layer_counts,
    ratio_sweep,
    rq2_view,
    top_rate_of,
    unmodified_condition,
    ci_of,
    effect_rows,
)
from emoneurons.report.style import LAYER_RANGES

# ---------------------------------------------------------------------------------------------
# The document model


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """Text with `code` and **bold** inline markup only."""

    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    numeric: tuple[bool, ...] = field(default=())  # right-aligned columns


@dataclass(frozen=True)
class Image:
    """A figure of reports/figures/ by name (figure1 -> figures/figure1.png)."""

    name: str
    alt: str


Block = Heading | Paragraph | Bullets | Table | Image


def render_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            out.append(_markdown_table(block))
        elif isinstance(block, Image):
            out.append(f"![{block.alt}](figures/{block.name}.png)")
    return "\n\n".join(out) + "\n"


def _markdown_table(table: Table) -> str:
    numeric = table.numeric or tuple(False for _ in table.headers)
    rule = ["---:" if n else "---" for n in numeric]
    lines = [
        "| " + " | ".join(_cell(h) for h in table.headers) + " |",
        "| " + " | ".join(rule) + " |",
        *("| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows),
    ]
    caption = f"*{table.caption}*\n\n" if table.caption else ""
    return caption + "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------------
# Number formats (parsed back by the tests: keep them plain)


def pct(value: float, digits: int = 1) -> str:
    """0.8333 -> '83.3' (a share shown in percent); NaN -> 'n/a'."""
    return "n/a" if _missing(value) else f"{100 * value:.{digits}f}"


def pp(value: float, digits: int = 1) -> str:
    """A change already in percentage points, signed: '+2.5', '-3.0'."""
    return "n/a" if _missing(value) else f"{value:+.{digits}f}"


def count(value: Any) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def ci(low: float, high: float) -> str:
    return "n/a" if _missing(low) or _missing(high) else f"[{pct(low)}, {pct(high)}]"


# ---------------------------------------------------------------------------------------------
# The published numbers (Lee et al., Findings of ACL 2025)

PAPER_MODELS: dict[str, dict[str, Any]] = {
    # layers x FFN width from the public model configs; the paper selects the top 1% of them all.
    "Llama-3.1-8B-Instruct": {"layers": 32, "neurons_per_layer": 14336, "neurons": {
        "anger": 1882, "disgust": 1598, "fear": 1629, "happiness": 1320, "sadness": 1570,
        "surprise": 1070}},
    "Llama-3.1-70B-Instruct": {"layers": 80, "neurons_per_layer": 28672, "neurons": {
        "anger": 7910, "sadness": 8314, "surprise": 4976}},
}
PAPER_MASKING: tuple[tuple[str, str, float, float], ...] = (
    # (model, emotion, unmodified accuracy %, accuracy % with the emotion's neurons masked)
    ("Llama-3.1-8B-Instruct", "disgust", 96.11, 37.22),
    ("Llama-3.1-70B-Instruct", "surprise", 93.17, 73.83),
)
PAPER_OVERLAP: tuple[tuple[str, str, str, str], ...] = (
    # (model, emotion A, emotion B, published overlap)
    ("Llama-3.1-8B-Instruct", "anger", "disgust", "about 48%"),
    ("Llama-3.1-8B-Instruct", "happiness", "anger", "about 4-8%"),
    ("Llama-3.1-8B-Instruct", "happiness", "disgust", "about 4-8%"),
    ("Llama-3.1-70B-Instruct", "anger", "disgust", "about 43%"),
    ("Llama-3.1-70B-Instruct", "anger", "happiness", "about 3%"),
)
PAPER_LAYERS: tuple[tuple[str, str, float], ...] = (
    # Llama-3.1-70B-Instruct, own neurons masked in one layer range: accuracy change (pp)
    ("surprise", "bottom", -4.15), ("surprise", "middle", -10.46), ("surprise", "all", -20.75),
    ("disgust", "top", -1.63), ("fear", "all", -2.44),
)
PAPER_TEST_DIALOGUES = round(0.05 * 293_715)  # the 5% test split of the filtered data


# ---------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class RunMetrics:
    """Everything the plot stage reads (docs/CONTRACTS.md), parsed from JSON, plus the params."""

    filter: Mapping[str, Any]
    meta: Mapping[str, Any]
    neurons: Mapping[str, Any]
    eval: Mapping[str, Any]
    neuron_metrics: Mapping[str, Any]
    params: Params


def params_digest(params: Params) -> str:
    """Short sha256 of the validated params (defaults filled in), stable across key order."""
    return hashlib.sha256(params.model_dump_json().encode()).hexdigest()[:12]


def model_name(run: RunMetrics) -> str:
    return str(run.eval.get("model") or run.meta.get("model") or run.params.model.id)


def data_source(params: Params) -> str:
    backend = params.generate.backend
    if backend == "template":
        return "template (offline phrase-bank composition, not LLM-written)"
    if backend == "openai":
        return f"openai-compatible endpoint, model `{params.generate.openai.model}`"
    return f"hf, local model `{params.model.id}`"


def baseline_clear(eval_json: Mapping[str, Any]) -> tuple[bool, float, float, float]:
    """(clearly above chance, overall accuracy, lower 95% bound, chance): clear when the lower
    bound of the exact (Clopper-Pearson) CI is above chance."""
    base = unmodified_condition(eval_json)
    accuracy = accuracy_of(base)["overall"]
    low, _ = ci_of(base)["overall"]
    chance = float(eval_json.get("chance") or 1 / len(EMOTIONS))
    return (not math.isnan(low) and low > chance), accuracy, low, chance


def build_report(run: RunMetrics) -> list[Block]:
    top_rate = top_rate_of(run.neurons)
    changes = accuracy_changes(run.eval)
    blocks: list[Block] = [
        Heading("Emotion neurons: run report", 1),
        Paragraph(
            f"Model `{model_name(run)}`, params digest `{params_digest(run.params)}` "
            f"(sha256 of the validated params.yaml, first 12 hex digits). Reproduces Lee et al., "
            f"*Do Large Language Models Have \"Emotion Neurons\"?* (Findings of ACL 2025)."
        ),
    ]
    blocks += _run_section(run, top_rate)
    blocks += _baseline_section(run)
    blocks += _table1_section(run)
    blocks += _figure1_section(run, top_rate)
    blocks += _figure2_section(run, top_rate)
    blocks += _figure3_section(run, changes)
    blocks += _figure4_section(changes, top_rate)
    blocks += _specificity_section(run)
    blocks += _figure14_section(run, top_rate)
    blocks += _figure15_section(run, top_rate)
    blocks += _paper_section(run, top_rate, changes)
    return blocks


def _run_section(run: RunMetrics, top_rate: float) -> list[Block]:
    params, meta, ev, flt = run.params, run.meta, run.eval, run.filter
    train = sum(int(v) for v in (meta.get("dialogues") or {}).values())
    layers, width = int(run.neurons["layers"]), int(run.neurons["neurons_per_layer"])
    judges = ", ".join(flt.get("judges") or [j.name for j in params.filter.judges])
    tokens = ev.get("tokens") or {}
    items = [
        f"Model: `{model_name(run)}` (params `model.id: {params.model.id}`, dtype "
        f"`{params.model.dtype}`); {layers} layers x {width:,} FFN neurons = {layers * width:,} neurons.",
        f"Data source (`generate.backend`): {data_source(params)}.",
        f"Data size: generated {count(flt.get('generated'))}, kept {count(flt.get('kept'))} "
        f"after filtering (judges: {judges}; at least {flt.get('min_agree')} of "
        f"{1 + len(flt.get('judges') or [])} labels agreeing), train {train:,}, "
        f"test {count(ev.get('n_test'))}.",
        f"Counting: activation `{meta.get('activation')}`, positions `{meta.get('positions')}`, "
        f"text `{meta.get('text')}`; tokens counted per emotion: "
        + ", ".join(f"{e} {count((meta.get('tokens') or {}).get(e))}" for e in EMOTIONS) + ".",
        f"Selection: `{run.neurons.get('assign')}` assignment, top {100 * top_rate:g}% lowest-entropy "
        f"neurons ({count(run.neuron_metrics.get('selected'))} selected; a neuron may belong to "
        f"several emotions).",
        f"Evaluation: method `{ev.get('method')}`, {ev.get('shots')} shot(s) per emotion, "
        f"exact (Clopper-Pearson) 95% CIs for accuracies, {params.eval.bootstrap} paired bootstrap "
        f"resamples for the 95% CIs of mean effects, "
        f"{params.eval.control_draws} random-neuron control draw(s) per masked condition.",
        f"Params digest: `{params_digest(params)}`.",
    ]
    if tokens:
        items.append(f"Tokens run through the model in evaluation: {count(tokens.get('computed'))} "
                     f"(without prefix reuse: {count(tokens.get('naive'))}).")
    return [Heading("Run"), Bullets(tuple(items))]


def _baseline_section(run: RunMetrics) -> list[Block]:
    ev = run.eval
    clear, accuracy, low, chance = baseline_clear(ev)
    base = unmodified_condition(ev)
    intervals = ci_of(base)
    shots = int(ev.get("shots") or 0)
    how = (
        f"The unmodified model classifies the {count(ev.get('n_test'))} test dialogues with the "
        f"paper's prompt (Figure 5), method `{ev.get('method')}` "
        + ("(the label with the highest log-likelihood is the answer)"
           if ev.get("method") == "score" else "(greedy decoding, first emotion word)")
        + (f", after {shots} in-context example(s) per emotion drawn from the train split"
           if shots else ", zero-shot as in the paper")
        + (f" ({ev.get('shot_selection')} selection)" if shots and ev.get("shot_selection") else "")
        + (" as user/assistant turns, the first with the paper's user prompt around its dialogue and the rest as bare dialogues"
           if shots and ev.get("shot_instruction") == "first" else "")
        + (f"; labels scored as `{ev.get('label_format')}` words" if ev.get("method") == "score" and ev.get("label_format") else "")
        + ({"chat": "; prompts in the model's chat template",
            "plain": "; prompts in the plain `role: content` format (the tokenizer has no chat template, or `eval.prompt_format: plain`)"}
           .get(str(ev.get("prompt_format")), ""))
        + ({"content_free": "; label probabilities calibrated by those of a content-free dialogue",
            "train_prior": "; label probabilities divided by their mean over a few train dialogues, "
                           "never test dialogues"}.get(str(ev.get("calibrate")), ""))
        + ((" (that prior recomputed under every mask)" if ev.get("recalibrate")
            else " (the unmodified model's prior, kept fixed under every mask, so a mask's shift of the label prior shows)")
           if ev.get("calibrate") in ("content_free", "train_prior") else "")
        + f". Overall accuracy **{pct(accuracy)}%** (95% CI {ci(*intervals['overall'])}) against "
        f"chance {pct(chance)}% (the larger of 1/6 and always answering the test split's most "
        f"frequent emotion)."
    )
    blocks: list[Block] = [Heading("Baseline"), Paragraph(how)]
    if not clear:
        blocks.append(Paragraph(
            f"**The unmodified model is not clearly above chance**: the lower bound of its 95% CI "
            f"({pct(low)}%) is at or below chance ({pct(chance)}%). Accuracy changes under masking "
            f"cannot be read as the model losing an ability it showed; treat every masking result "
            f"below as uninformative."
        ))
    flagged = ev.get("baseline_above_chance")
    if flagged is not None and bool(flagged) != clear:
        blocks.append(Paragraph(
            f"Note: eval.json's `baseline_above_chance` is {flagged}, while its overall CI lower "
            f"bound says {clear}; this report goes by the CI."
        ))
    n = ev.get("n_per_emotion") or {}
    rows = []
    for e in EMOTIONS:
        a = accuracy_of(base)[e]
        lo, hi = intervals[e]
        above = "yes" if not math.isnan(lo) and lo > chance else "no"
        rows.append((e, count(n.get(e)), pct(a), ci(lo, hi), above))
    rows.append(("overall", count(ev.get("n_test")), pct(accuracy), ci(*intervals["overall"]),
                 "yes" if clear else "no"))
    blocks.append(Table(("emotion", "test dialogues", "accuracy (%)", "95% CI (%)",
                         "CI above chance"), tuple(rows),
                        "Unmodified accuracy per true emotion", (False, True, True, False, False)))
    return blocks


def _table1_section(run: RunMetrics) -> list[Block]:
    table = run.filter.get("table1") or {}
    dropped = run.filter.get("dropped_per_emotion") or {}
    rows = [(e, count((table.get(e) or {}).get("count")),
             f"{float((table.get(e) or {}).get('percent', math.nan)):.2f}", count(dropped.get(e, 0)))
            for e in EMOTIONS]
    total = table.get("total") or {}
    rows.append(("total", count(total.get("count")), f"{float(total.get('percent', 100.0)):.2f}",
                 count(sum(int(v) for v in dropped.values()))))
    agreement = run.filter.get("judge_agreement") or {}
    invalid = run.filter.get("judge_invalid") or {}
    blocks: list[Block] = [
        Heading("Table 1: dialogues per emotion after filtering"),
        Table(("emotion", "count", "percentage (%)", "dropped"), tuple(rows),
              "Dialogues kept per intended emotion", (False, True, True, True)),
    ]
    if agreement:
        intervals = run.filter.get("judge_agreement_ci95") or {}
        at_chance = run.filter.get("judges_at_chance")
        chance = run.filter.get("judge_chance")
        blocks.append(Table(
            ("judge", "agreement with the intended emotion (%)", "95% CI (%)", "above chance", "invalid answers"),
            tuple((name, pct(float(agreement[name])), ci(*(intervals.get(name) or (None, None))),
                   "n/a" if at_chance is None else ("no" if name in at_chance else "yes"), count(invalid.get(name, 0)))
                  for name in agreement),
            "Judges" + (f" (chance: {pct(float(chance))}%, the larger of 1/6 and the most frequent intended emotion's share)"
                        if chance is not None else ""), (False, True, False, False, True)))
        if at_chance:
            blocks.append(Paragraph(
                f"**Warning: judge(s) {', '.join(f'`{n}`' for n in at_chance)} at chance**: the 95% CI of their agreement "
                f"with the intended emotion reaches down to chance ({pct(float(chance))}%). Such a judge does not filter by "
                f"emotion; the dialogues it keeps or drops are kept or dropped at random."))
    blocks.append(Image("table1", "Table 1: dialogues kept per emotion"))
    return blocks


def _figure1_section(run: RunMetrics, top_rate: float) -> list[Block]:
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


def _figure2_section(run: RunMetrics, top_rate: float) -> list[Block]:
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
        found = [c for c in run.eval.get("conditions") or [] if c.get("kind") == "mask" and c.get("masked") == m
                 and c.get("layers") == "all" and c.get("ratio") is not None and math.isclose(float(c["ratio"]), top_rate)]
        per = (((found[0].get("effect") or {}).get("delta_true") or {}).get("per_emotion") or {}) if found else {}
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


def number(value: Any, digits: int = 3) -> str:
    return "n/a" if _missing(value) else f"{float(value):.{digits}f}"


def p_value(value: Any) -> str:
    if _missing(value):
        return "n/a"
    return f"{float(value):.2g}" if float(value) < 0.001 else f"{float(value):.3f}"


def _specificity_section(run: RunMetrics) -> list[Block]:
    rows = effect_rows(run.eval)
    summary = run.eval.get("effects") or {}
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
            f"Paired on the same {count(run.eval.get('n_test'))} test dialogues. Effect: {measure} under the mask "
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


def ci_plain(low: Any, high: Any) -> str:
    return "[n/a]" if _missing(low) or _missing(high) else f"[{float(low):.3f}, {float(high):.3f}]"


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


def _figure3_section(run: RunMetrics, changes: Sequence[Mapping[str, Any]]) -> list[Block]:
    rows = ratio_sweep(changes)
    ratios = sorted({r["ratio"] for r in rows})
    return [
        Heading("Figure 3: masking ratio"),
        Image("figure3", "Figure 3: accuracy change over masking ratios"),
        _change_table(rows, "ratio", ratios, "ratio (%)"),
        *_effect_image_blocks(run, "figure3_effect", "Figure 3 (effect): paired effect over masking ratios vs random neurons"),
    ]


def _figure4_section(changes: Sequence[Mapping[str, Any]], top_rate: float) -> list[Block]:
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


def _figure14_section(run: RunMetrics, top_rate: float) -> list[Block]:
    overlap = overlap_of(run.neurons, top_rate)
    return [
        Heading("Figure 14: overlap of emotion neuron sets"),
        Paragraph(f"Overlap ratio = {OVERLAP_DEFINITION}. The paper does not state its definition; "
                  f"this one is symmetric, as the paper's Figure 14 is, and 100% on the diagonal."),
        Image("figure14", "Figure 14: overlap ratio heatmap"),
        _matrix_table(overlap, "A \\ B", "Overlap ratio (%) between emotion neuron sets"),
    ]


def _figure15_section(run: RunMetrics, top_rate: float) -> list[Block]:
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


def _paper_section(run: RunMetrics, top_rate: float, changes: Sequence[Mapping[str, Any]]) -> list[Block]:
    per_layer = per_layer_counts(run.neurons, top_rate)
    layers, width = int(run.neurons["layers"]), int(run.neurons["neurons_per_layer"])
    selected_here = top_rate * layers * width
    name = model_name(run)
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
    view = rq2_view(run.eval, top_rate)
    mask_rows = []
    for model, emotion, before, after in PAPER_MASKING:
        here_before = view["unmodified"]["accuracy"][emotion]
        here_after = view["masked"][emotion]["accuracy"][emotion] if emotion in view["masked"] else math.nan
        mask_rows.append((model, emotion, f"{before:.2f}", f"{after:.2f}", pp(after - before),
                          pct(here_before), pct(here_after), pp(100 * (here_after - here_before))))
    overlap = overlap_of(run.neurons, top_rate)
    index = {e: i for i, e in enumerate(EMOTIONS)}
    overlap_rows = tuple(
        (model, f"{a}-{b}", published, pct(float(overlap[index[a], index[b]])))
        for model, a, b, published in PAPER_OVERLAP
    )
    layer_ratio = layer_sweep_ratio(changes, top_rate)
    layer_rows = []
    for emotion, layers_, published in PAPER_LAYERS:
        here = next((r["accuracy_change"] for r in layer_sweep(changes, layer_ratio)
                     if r["masked"] == emotion and r["emotion"] == emotion
                     and r["layers"] == layers_ and r["condition"] == "mask"), math.nan)
        layer_rows.append((emotion, layers_, pp(published, 2), pp(here)))
    clear, *_ = baseline_clear(run.eval)
    return [
        Heading("Against the paper"),
        Paragraph(_not_comparable(run, name, clear)),
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
        Table(("paper model", "emotion", "paper unmodified (%)", "paper masked (%)",
               "paper change (pp)", "this run unmodified (%)", "this run masked (%)",
               "this run change (pp)"), tuple(mask_rows),
              "Own neurons masked (all layers, 1% in the paper)", (False, False) + (True,) * 6),
        Table(("paper model", "pair", "paper overlap", "this run (%)"), overlap_rows,
              f"Overlap ratio; this run uses {OVERLAP_DEFINITION}", (False, False, True, True)),
        Table(("emotion", "layers", "paper 70B change (pp)", "this run change (pp)"),
              tuple(layer_rows), "Own neurons masked in one layer range (Figure 4)",
              (False, False, True, True)),
    ]


def _not_comparable(run: RunMetrics, name: str, clear: bool) -> str:
    params = run.params
    reasons = []
    if "llama-3.1-8b" not in name.lower() and "llama-3.1-70b" not in name.lower():
        reasons.append(f"the model is `{name}`, not Llama-3.1-8B/70B-Instruct, so neuron counts, "
                       f"layers and accuracies belong to a different network")
    layers, width = int(run.neurons["layers"]), int(run.neurons["neurons_per_layer"])
    reasons.append(f"the scale differs: {layers * width:,} FFN neurons here against 458,752 (8B) "
                   f"and 2,293,760 (70B), and {count(run.eval.get('n_test'))} test dialogues "
                   f"against about {PAPER_TEST_DIALOGUES:,}, so the CIs here are "
                   f"{'wide' if int(run.eval.get('n_test') or 0) < 1000 else 'comparable'}")
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
    if int(run.eval.get("shots") or 0) or run.eval.get("method") != "generate":
        reasons.append(f"classification uses method `{run.eval.get('method')}` with "
                       f"{run.eval.get('shots')} shot(s) per emotion; the paper decodes zero-shot")
    if not clear:
        reasons.append("the unmodified model is not clearly above chance, so masking effects here "
                       "say nothing about emotion neurons")
    return ("This run is **not directly comparable** to the paper where: " + "; ".join(reasons)
            + ". The tables below put the numbers side by side; read shares and directions, not "
            "absolute values.")
