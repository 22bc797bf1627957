"""generate: one dialogue per (topic, emotion, k) from data/topics.parquet into data/dialogues.parquet."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from emoneurons.backends.cache import prepare_cache_dir
from emoneurons.backends.template import TEMPLATE
from emoneurons.dataset.dialogues import llm_dialogues, template_dialogues
from emoneurons.io.artifacts import DIALOGUES, GENERATE_CACHE, GENERATE_REPORT, TOPICS
from emoneurons.io.atomic import write_json
from emoneurons.io.suites import check_dialogues, checks_path, checks_record
from emoneurons.io.tables import DataError, read_table, write_table
from emoneurons.params import load_stage_params
from emoneurons.runtime.stage_run import run_stage


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (sections `generate`, `model`)"),
    topics: Path = typer.Option(Path(TOPICS.path), help="augmented topics"),
    out: Path = typer.Option(Path(DIALOGUES.path), help="generated dialogues"),
    report: Path = typer.Option(Path(GENERATE_REPORT.path), help="generate metrics"),
    cache: Path = typer.Option(Path(GENERATE_CACHE.path), help="chat request cache (openai / hf backends)"),
) -> None:
    start = time.perf_counter()
    settings = load_stage_params(params, ("generate", "model", "eval.prompt_format"))
    generate = settings.generate
    table = read_table(topics)
    if "topic" not in table.columns:
        raise DataError(f"{topics}: no column 'topic' (has {', '.join(table.columns) or 'none'})")
    names = table["topic"].drop_nulls().to_list()
    if not names:
        raise DataError(f"{topics}: 0 topics (need at least 1)")
    prepare_cache_dir(cache)  # after the input checks: a rejected input writes nothing
    if generate.backend == TEMPLATE:
        df, stats = template_dialogues(names, generate.emotions, generate.per_pair, generate.seed, generate.max_turns)
        backend = None
    else:
        from emoneurons.backends.factory import make_chat_backend

        backend = make_chat_backend(
            generate.backend, openai=generate.openai, hf=generate.hf, model=settings.model,
            cache_dir=cache, seed=generate.seed, prompt_format=settings.eval.prompt_format,
        )
        df, stats = llm_dialogues(names, generate.emotions, generate.per_pair, backend, generate.max_retries)
        if df.height == 0:
            raise DataError(
                f"generate: 0 of {stats.planned} dialogues usable after {generate.max_retries} re-asks "
                f"(rejected: {stats.rejected})"
            )
    checked = check_dialogues(df, source=str(out))
    per_emotion = dict(df.group_by("theme").len().iter_rows())
    metrics = {
        "backend": generate.backend,
        "model": df["model"][0],
        "topics": len(names),
        "emotions": list(generate.emotions),
        "per_pair": generate.per_pair,
        **stats.as_metrics(),
        "per_emotion": {e: per_emotion.get(e, 0) for e in generate.emotions},
        **({"usage": backend.usage.as_metrics()} if backend is not None else {}),
    }
    write_json(checks_path(out), checks_record(checked))
    write_table(df, out)
    write_json(report, metrics)
    print(
        f"generate: {stats.generated} of {stats.planned} dialogues ({len(names)} topics x "
        f"{len(generate.emotions)} emotions x {generate.per_pair}; {stats.reasked} re-asked, "
        f"{stats.dropped} dropped{cut_off_note(backend)}) [{generate.backend}, {time.perf_counter() - start:.1f}s]"
    )


def cut_off_note(backend) -> str:
    """'; N replies cut off at the token limit' when the backend saw any (they were re-asked or dropped)."""
    truncated = backend.usage.truncated if backend is not None else 0
    return f"; {truncated} replies cut off at the token limit" if truncated else ""


if __name__ == "__main__":
    run_stage(main, "generate", Path(GENERATE_CACHE.path))
