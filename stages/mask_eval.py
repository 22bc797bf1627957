"""mask-eval: classify the test dialogues unmodified and with emotion / random neurons masked
(RQ2, RQ3, controls); write reports/metrics/eval.json and headline.json."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.conditions import needs_activity
from emoneurons.evaluate.exp_metrics import exp_summary
from emoneurons.evaluate.masking_eval import evaluate_masking
from emoneurons.io.artifacts import COUNTS, EVAL, HEADLINE, NEURONS, SUMMARY, TEST, TRAIN
from emoneurons.io.atomic import write_json
from emoneurons.io.eval_file import parse_eval
from emoneurons.io.neurons_file import read_neurons
from emoneurons.io.result_suites import check_evaluation
from emoneurons.io.suites import checks_path, checks_record
from emoneurons.io.tables import read_counts, read_table, table_rows
from emoneurons.neurons.selection import overall_activation_probability
from emoneurons.params import load_stage_params
from emoneurons.runtime.checkpoint import DEFAULT_ROOT
from emoneurons.runtime.distributed import relaunch_if_requested, start
from emoneurons.runtime.resume import ConditionSchedule, mask_eval_checkpoints
from emoneurons.runtime.stage_run import model_from, run_stage
from emoneurons.text.nrc_lexicon import cue_words
from emoneurons.text.prompt_format import resolve_prompt_format
from emoneurons.text.truncation import Truncation


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (sections model, select, eval)"),
    split: Path = typer.Option(TRAIN.folder, help="folder with train.parquet and test.parquet"),
    neurons: Path = typer.Option(Path(NEURONS.path), help="selected neurons"),
    counts: Path = typer.Option(COUNTS.folder, help="folder with counts.safetensors (P(active) for matched controls)"),
    out: Path = typer.Option(EVAL.folder, help="folder for eval.json, headline.json and summary.json"),
    checkpoints: Path = typer.Option(DEFAULT_ROOT, help="folder for finished conditions kept across a kill (not an out)"),
) -> None:
    settings = load_stage_params(params, ("model", "select.top_rate", "eval"))
    with model_from(params, settings.model.id):
        # The train split gives a few shots and calibration rows: it is read a batch at a time
        # (evaluate/shots.py), the test split whole (its dialogues are all classified).
        train_path, test_path = TRAIN.at(split), TEST.at(split)
        train, test = train_path, read_table(test_path)
        table_rows(train)  # missing or unreadable: one line now, before the model loads
        selection = read_neurons(neurons)
        p_active = None
        if needs_activity(settings.eval):
            p_active = overall_activation_probability(*read_counts(counts))
        if settings.eval.keyword_control:
            cue_words()  # a missing or broken NRC lexicon: one line before the model loads
        from emoneurons.model.loading import load_model  # imports torch/transformers: after the cheap checks
        from emoneurons.runtime.compute import pin_threads

        pin_threads()  # EMONEURONS_THREADS: the torch threads, and so the forked workers (one a thread)

        ranks = start(settings.model.device)  # one process, or one of `accelerate launch`'s
        inputs = [train_path, test_path, neurons]
        if p_active is not None:
            inputs.append(COUNTS.at(counts))
        saved = mask_eval_checkpoints(checkpoints, settings.model, settings.select.top_rate, settings.eval, inputs)
        if ranks.main:
            saved.drop_stale()
        lm = load_model(settings.model.model_copy(update={"device": ranks.model_device(settings.model.device)}))
        prompt_format = resolve_prompt_format(lm.tokenizer, settings.eval.prompt_format)  # once, for this model
        results = evaluate_masking(
            lm, train, test, selection, settings.eval, settings.select.top_rate, prompt_format=prompt_format,
            batch_size=settings.model.batch_size,
            max_length=settings.model.max_length, schedule=ConditionSchedule(ranks, saved),
            train_name=str(train_path), test_name=str(test_path), p_active=p_active,
        )
    if results is None:  # not rank 0: rank 0 alone writes; wait for it, then leave
        ranks.barrier()
        return
    evaluation, headline, plan = results
    # The results' own checks against the plan they ran, before anything is written.
    planned = [c.id for c in plan]
    # eval.checks.json names the results by their path in the pipeline whatever --out is (as count does).
    checked = check_evaluation(evaluation, planned, test.height, source=EVAL.path)
    written = parse_eval(evaluation)  # as plot and compare will read it
    write_json(checks_path(EVAL.at(out)), checks_record(checked))
    write_json(EVAL.at(out), evaluation)
    write_json(HEADLINE.at(out), headline)
    write_json(SUMMARY.at(out), exp_summary(headline, selection, settings.select.top_rate))
    ranks.barrier()  # every rank is past its last save
    saved.remove()
    base = written.unmodified()
    lo, hi = base.ci95["overall"]
    tokens = written.tokens
    print(f"mask-eval: unmodified accuracy {base.accuracy['overall']:.3f} [95% CI {lo:.3f}, {hi:.3f}] "
          f"vs chance {written.chance:.3f}; {len(written.conditions)} conditions; tokens computed "
          f"{tokens['computed']} of naive {tokens['naive']} ({tokens['computed'] / max(tokens['naive'], 1):.2f})")
    rq2 = [written.find("mask", e, settings.select.top_rate, "all") for e in EMOTIONS]
    for kind in written.control_kinds:
        verdicts = [f"{m[0].masked} {(m[0].versus(kind) or {}).get('verdict', 'n/a')}" for m in rq2 if m]
        print(f"mask-eval vs {kind} controls (select.top_rate, all layers): " + ", ".join(verdicts))
    if written.draw_null is not None:
        record = written.draw_null
        print(f"mask-eval draw-level null ({record['draws']} {record['kind']} draws; {record['draws_needed']} needed for the "
              f"rank test over {record['corrected_over']}): " + ", ".join(
                  f"{cid.removeprefix('mask-')} rank {e['rank']}, {e['verdict_normal']} (normal)"
                  for cid, e in record["conditions"].items() if e["rank"] is not None))
    if written.keyword_control is not None:
        control = written.keyword_control
        removal = control["removal"]
        print(f"mask-eval keyword control: {removal['with_cues']} of {removal['dialogues']} test dialogues had NRC cue words "
              f"({removal['cue_words']} replaced by {removal['placeholder']!r}; {removal['no_other_word']} had no other word); "
              f"unmodified accuracy {control['accuracy_unmodified']['with_words']:.3f} with, "
              f"{control['accuracy_unmodified']['without_words']:.3f} without; "
              + ", ".join(f"{e} {v['verdict']}" for e, v in control["emotions"].items()))
    cut = Truncation(**written.truncated)
    if cut.dialogues:
        # not "of n_test": the cut counts the calibration dialogues too (4,296 "of" 4,284 at 30% of EmoPrism's volume)
        print(cut.describe(None, f"mask-eval ({written.n_test} test dialogues and the calibration dialogues)"), file=sys.stderr)
    if not written.baseline_above_chance:
        print(f"warning: the unmodified model is not clearly above chance (CI lower bound {lo:.3f} <= {written.chance:.3f}); "
              "masking effects are not interpretable; try eval.shots or a larger model", file=sys.stderr)

if __name__ == "__main__":
    relaunch_if_requested(__file__, sys.argv[1:])
    run_stage(main, "mask-eval")
