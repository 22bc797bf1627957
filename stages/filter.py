"""filter: label data/dialogues.parquet with each judge and keep the dialogues enough labels
agree on; writes data/filtered.parquet and reports/filter.json (Table 1). With
`filter.source: emoprism` the dialogues and judge labels come from the paper's released data set."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from emoneurons.backends.cache import prepare_cache_dir
from emoneurons.backends.judges import judge_metrics, make_judges
from emoneurons.dataset.emoprism import read_emoprism
from emoneurons.dataset.filtering import filter_to_table
from emoneurons.io.artifacts import DIALOGUES, EXTERNAL, FILTER_CACHE, FILTER_REPORT, FILTERED
from emoneurons.io.atomic import write_json
from emoneurons.io.suites import checks_path, checks_record
from emoneurons.io.tables import BATCH_ROWS, table_batches, table_rows
from emoneurons.params import ParamsError, load_stage_params, require_under
from emoneurons.runtime.stage_run import run_stage


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (sections `filter`, `model`)"),
    dialogues: Path = typer.Option(Path(DIALOGUES.path), help="generated dialogues"),
    out: Path = typer.Option(Path(FILTERED.path), help="kept dialogues with judge labels"),
    report: Path = typer.Option(Path(FILTER_REPORT.path), help="filter metrics (Table 1)"),
    cache: Path = typer.Option(Path(FILTER_CACHE.path), help="chat request cache (openai judges)"),
    external: Path = typer.Option(Path(EXTERNAL.path), help="folder of imported data sets (a dep in dvc.yaml); filter.emoprism.path must lie in it"),
    batch_rows: int = typer.Option(BATCH_ROWS, min=1, help="dialogues held at once: memory against the data checks' cost per call (the rows written do not depend on it)"),
) -> None:
    start = time.perf_counter()
    settings = load_stage_params(params, ("filter", "model", "eval.prompt_format"))
    require_under(external, "filter.emoprism.path", settings.filter.emoprism.path, params)
    options = settings.filter
    emoprism = None
    if options.source == "emoprism":
        # The whole file is read and checked first (one line on bad input, nothing written), then again in batches.
        emoprism = read_emoprism(options.emoprism.path, options.emoprism.judge_columns, desc="filter: read and check")
        labels, judges, total = emoprism.judges, [], emoprism.records
        if not 1 <= options.min_agree <= 1 + len(labels):
            raise ParamsError(
                f"filter.min_agree: must be between 1 and {1 + len(labels)} (the intended emotion plus "
                f"the {len(labels)} judge columns of {options.emoprism.path}), got {options.min_agree}"
            )
        prepare_cache_dir(cache)  # a DVC output even when unused; made only once the input passed
        seconds = dict.fromkeys(labels, 0.0)
        batches = emoprism.batches(batch_rows)
    else:
        batches, judges, seconds = _judged(dialogues, cache, options.judges, settings.model, settings.eval.prompt_format, batch_rows)
        labels, total = [judge.name for judge in judges], table_rows(dialogues)
    metrics, checked = filter_to_table(batches, total, labels, options.min_agree, out,
                                       input_source=options.emoprism.path if emoprism is not None else None)
    if emoprism is not None:
        metrics["source"] = {"emoprism": options.emoprism.path, "label_not_theme": emoprism.label_not_theme}
    metrics |= judge_metrics(judges)
    write_json(checks_path(out), checks_record(checked))
    write_json(report, metrics)
    # Timings go to the console, not the metrics file, so a rerun does not change the metrics.
    agreement = ", ".join(
        f"{name} {value} ({seconds[name]}s)" for name, value in metrics["judge_agreement"].items()
    )
    print(
        f"filter: kept {metrics['kept']} of {metrics['generated']} dialogues (min_agree {options.min_agree}; "
        f"agreement with the intended emotion: {agreement}) [{time.perf_counter() - start:.1f}s]"
    )
    for name in metrics.get("judges_at_chance", []):
        low, high = metrics["judge_agreement_ci95"][name]
        print(f"warning: judge {name!r} agrees with the intended emotion on {metrics['judge_agreement'][name]} "
              f"(95% CI {low}-{high}), not above chance {metrics['judge_chance']}: it does not filter, it only "
              "drops dialogues at random; remove it from filter.judges or use a better model", file=sys.stderr)


def _judged(dialogues: Path, cache: Path, specs, model, prompt_format: str, rows: int) -> tuple:
    """The generated dialogues a batch at a time with each judge's labels (judges `specs`:
    filter.judges), the judges, and their seconds so far (filled in as the batches are labelled)."""
    batches = table_batches(dialogues, rows, required=("dialogue", "theme"))  # a missing column: one line, before any work
    prepare_cache_dir(cache)  # only once the input passed: a rejected input leaves nothing behind
    classify = None
    if any(spec.backend == "hf" for spec in specs):
        from emoneurons.evaluate.classify import classify  # torch/transformers only for an hf judge
    judges = make_judges(specs, model, cache, prompt_format, classify=classify)
    seconds = {judge.name: 0.0 for judge in judges}

    def labelled():
        for df in batches:
            texts = df["dialogue"].to_list()
            labels = {}
            for judge in judges:
                began = time.perf_counter()
                labels[judge.name] = judge.label(texts)
                seconds[judge.name] = round(seconds[judge.name] + time.perf_counter() - began, 2)
            yield df, labels

    return labelled(), judges, seconds


if __name__ == "__main__":
    run_stage(main, "filter", Path(FILTER_CACHE.path))
