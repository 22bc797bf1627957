"""report.md's first sections: the run's settings, the unmodified model's baseline, Table 1."""

from __future__ import annotations

import math

from emoneurons.emotions import EMOTIONS
from emoneurons.io.eval_file import EvalFile
from emoneurons.report.document.blocks import Block, Bullets, Heading, Image, Paragraph, Table
from emoneurons.report.document.number_formats import ci, count, pct
from emoneurons.report.results.accuracy import accuracy_of, baseline_clear, ci_of
from emoneurons.report.results.run import RunMetrics, data_source, model_name, params_digest


def run_section(run: RunMetrics, top_rate: float) -> list[Block]:
    params, meta, ev, flt = run.params, run.meta, run.eval, run.filter
    train = sum(int(v) for v in (meta.get("dialogues") or {}).values())
    layers, width = run.neurons.layers, run.neurons.neurons_per_layer
    judges = ", ".join(flt.get("judges") or [j.name for j in params.filter.judges])
    tokens = ev.tokens or {}
    items = [
        f"Model: `{model_name(run)}` (params `model.id: {params.model.id}`, dtype "
        f"`{params.model.dtype}`); {layers} layers x {width:,} FFN neurons = {layers * width:,} neurons.",
        f"Data source (`generate.backend`): {data_source(params)}.",
        f"Data size: generated {count(flt.get('generated'))}, kept {count(flt.get('kept'))} "
        f"after filtering (judges: {judges}; at least {flt.get('min_agree')} of "
        f"{1 + len(flt.get('judges') or [])} labels agreeing), train {train:,}, "
        f"test {count(ev.n_test)}.",
        f"Counting: activation `{meta.get('activation')}`, positions `{meta.get('positions')}`, "
        f"text `{meta.get('text')}`; tokens counted per emotion: "
        + ", ".join(f"{e} {count((meta.get('tokens') or {}).get(e))}" for e in EMOTIONS) + ".",
        f"Selection: `{run.neurons.assign}` assignment, top {100 * top_rate:g}% lowest-entropy "
        f"neurons ({count(run.neuron_metrics.get('selected'))} selected; a neuron may belong to "
        f"several emotions).",
        f"Evaluation: method `{ev.method}`, {ev.shots} shot(s) per emotion, "
        f"exact (Clopper-Pearson) 95% CIs for accuracies, {params.eval.bootstrap} paired bootstrap "
        f"resamples for the 95% CIs of mean effects, "
        f"{params.eval.control_draws} random-neuron control draw(s) per masked condition.",
        f"Params digest: `{params_digest(params)}`.",
    ]
    if tokens:
        items.append(f"Tokens run through the model in evaluation: {count(tokens.get('computed'))} "
                     f"(without prefix reuse: {count(tokens.get('naive'))}).")
    return [Heading("Run"), Bullets(tuple(items))]


def _how_classified(ev: EvalFile) -> str:
    """How the unmodified model answered: prompt, method, shots, prompt format and calibration."""
    shots = int(ev.shots or 0)
    return (
        f"The unmodified model classifies the {count(ev.n_test)} test dialogues with the "
        f"paper's prompt (Figure 5), method `{ev.method}` "
        + ("(the label with the highest log-likelihood is the answer)"
           if ev.method == "score" else "(greedy decoding, first emotion word)")
        + (f", after {shots} in-context example(s) per emotion drawn from the train split"
           if shots else ", zero-shot as in the paper")
        + (f" ({ev.shot_selection} selection)" if shots and ev.shot_selection else "")
        + (" as user/assistant turns, the first with the paper's user prompt around its dialogue and the rest as bare dialogues"
           if shots and ev.shot_instruction == "first" else "")
        + (f"; labels scored as `{ev.label_format}` words" if ev.method == "score" and ev.label_format else "")
        + ({"chat": "; prompts in the model's chat template",
            "plain": "; prompts in the plain `role: content` format (the tokenizer has no chat template, or `eval.prompt_format: plain`)"}
           .get(str(ev.prompt_format), ""))
        + ({"content_free": "; label probabilities calibrated by those of a content-free dialogue",
            "train_prior": "; label probabilities divided by their mean over a few train dialogues, "
                           "never test dialogues"}.get(str(ev.calibrate), ""))
        + ((" (that prior recomputed under every mask)" if ev.recalibrate
            else " (the unmodified model's prior, kept fixed under every mask, so a mask's shift of the label prior shows)")
           if ev.calibrate in ("content_free", "train_prior") else "")
    )


def baseline_section(run: RunMetrics) -> list[Block]:
    ev = run.eval
    clear, accuracy, low, chance = baseline_clear(ev)
    base = ev.unmodified()
    intervals = ci_of(base)
    how = (
        _how_classified(ev)
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
    flagged = ev.baseline_above_chance
    if flagged is not None and bool(flagged) != clear:
        blocks.append(Paragraph(
            f"Note: eval.json's `baseline_above_chance` is {flagged}, while its overall CI lower "
            f"bound says {clear}; this report goes by the CI."
        ))
    n = ev.n_per_emotion or {}
    rows = []
    for e in EMOTIONS:
        a = accuracy_of(base)[e]
        lo, hi = intervals[e]
        above = "yes" if not math.isnan(lo) and lo > chance else "no"
        rows.append((e, count(n.get(e)), pct(a), ci(lo, hi), above))
    rows.append(("overall", count(ev.n_test), pct(accuracy), ci(*intervals["overall"]),
                 "yes" if clear else "no"))
    blocks.append(Table(("emotion", "test dialogues", "accuracy (%)", "95% CI (%)",
                         "CI above chance"), tuple(rows),
                        "Unmodified accuracy per true emotion", (False, True, True, False, False)))
    return blocks


def table1_section(run: RunMetrics) -> list[Block]:
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
