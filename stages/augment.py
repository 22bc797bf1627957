"""augment: grow data/seeds/topics.txt into data/topics.parquet by rounds of alternatives."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from emoneurons.backends.cache import prepare_cache_dir
from emoneurons.backends.template import TEMPLATE
from emoneurons.dataset.topics import augment_topics, llm_proposer, read_seeds, template_proposer
from emoneurons.io.artifacts import AUGMENT_CACHE, AUGMENT_REPORT, SEED_TOPICS, TOPICS
from emoneurons.io.atomic import write_json
from emoneurons.io.suites import check_topics, checks_path, checks_record
from emoneurons.io.tables import write_table
from emoneurons.params import load_stage_params
from emoneurons.runtime.stage_run import run_stage


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (sections `augment`, `model`)"),
    seeds: Path = typer.Option(Path(SEED_TOPICS.path), help="seed topics, one a line"),
    out: Path = typer.Option(Path(TOPICS.path), help="augmented topics"),
    report: Path = typer.Option(Path(AUGMENT_REPORT.path), help="augment metrics"),
    cache: Path = typer.Option(Path(AUGMENT_CACHE.path), help="chat request cache (openai / hf backends)"),
) -> None:
    start = time.perf_counter()
    settings = load_stage_params(params, ("augment", "model", "eval.prompt_format"))
    augment = settings.augment
    topics = read_seeds(seeds)
    prepare_cache_dir(cache)  # after the input checks: a rejected input writes nothing
    if augment.backend == TEMPLATE:
        propose, backend = template_proposer(augment.seed), None
    else:
        from emoneurons.backends.factory import make_chat_backend

        backend = make_chat_backend(
            augment.backend, openai=augment.openai, hf=augment.hf, model=settings.model,
            cache_dir=cache, seed=augment.seed, prompt_format=settings.eval.prompt_format,
        )
        propose = llm_proposer(backend, augment.seed)
    table, stats = augment_topics(topics, augment.n_seed, augment.rounds, propose, augment.max_retries, source=str(seeds))
    checked = check_topics(table, source=str(out))
    metrics = {
        "backend": augment.backend,
        "model": TEMPLATE if backend is None else backend.model,
        "seeds_read": len(topics),
        "n_seed": augment.n_seed,
        "rounds": augment.rounds,
        "topics": table.height,
        **stats.as_metrics(),
        **({"usage": backend.usage.as_metrics()} if backend is not None else {}),
    }
    write_json(checks_path(out), checks_record(checked))
    write_table(table, out)
    write_json(report, metrics)
    print(
        f"augment: {augment.n_seed} seeds -> {table.height} topics in {augment.rounds} round{'s' if augment.rounds != 1 else ''} "
        f"({stats.duplicates_reasked} duplicates re-asked, {stats.dropped} dropped) "
        f"[{augment.backend}, {time.perf_counter() - start:.1f}s]"
    )


if __name__ == "__main__":
    run_stage(main, "augment", Path(AUGMENT_CACHE.path))
