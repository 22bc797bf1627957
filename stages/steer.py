"""steer: each emotion's neurons scaled by alpha while the model replies to neutral prompts, the
replies classified as in mask-eval and labelled by filter.judges, against random neurons, each
condition's replies with their coherence (reports/steer/steer.json + figure)."""

from __future__ import annotations

from pathlib import Path

import typer

from emoneurons.backends.cache import prepare_cache_dir
from emoneurons.io.artifacts import NEURONS, STEER, STEER_CACHE, STEER_CHECKS, STEER_PROMPTS, TRAIN
from emoneurons.io.atomic import atomic_dir, write_json
from emoneurons.io.neurons_file import read_neurons
from emoneurons.io.result_suites import check_steer
from emoneurons.io.steer_file import parse_steer
from emoneurons.io.suites import checks_record
from emoneurons.io.tables import table_rows
from emoneurons.params import load_stage_params
from emoneurons.runtime.stage_run import model_from, run_stage


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (sections model, steer; select.top_rate; eval's classifier keys; filter.judges)"),
    prompts: Path = typer.Option(Path(STEER_PROMPTS.path), help="neutral prompts, one per line"),
    train: Path = typer.Option(Path(TRAIN.path), help="the classifier's in-context shots and calibration"),
    neurons: Path = typer.Option(Path(NEURONS.path), help="selected neurons"),
    out: Path = typer.Option(STEER.folder, help="folder for steer.json and the figure"),
    cache: Path = typer.Option(Path(STEER_CACHE.path), help="chat request cache (openai judges)"),
) -> None:
    settings = load_stage_params(params, ("model", "select.top_rate", "steer", "eval", "filter.judges"))
    # Imported only once the params are valid: torch and transformers take seconds to load.
    from emoneurons.backends.judges import judge_metrics, make_judges
    from emoneurons.evaluate.steering import (
        check_classifier_train,
        plan_steering,
        read_prompts,
        run_steering,
    )

    steer = settings.steer
    texts = read_prompts(prompts, steer.prompts)
    # The shots and calibration rows are read from the file a column or a row at a time
    # (evaluate/shots.py): the train split is never held whole.
    table_rows(train)  # missing or unreadable: one line now, before the model loads
    selection = read_neurons(neurons)
    plan = plan_steering(selection, settings.select.top_rate, steer)
    check_classifier_train(train, settings.eval, train_name=str(train))
    from emoneurons.model.loading import load_model  # imports torch/transformers: after the cheap checks
    from emoneurons.runtime.compute import pin_threads

    pin_threads()  # EMONEURONS_THREADS: a shared machine's runs take one thread each
    prepare_cache_dir(cache)  # a DVC output even when no judge asks a server; after the input checks
    lm = load_model(settings.model)
    from emoneurons.text.prompt_format import resolve_prompt_format

    # eval.prompt_format resolved for this model once: the replies, the classifier, the hf judges and steer.json use it
    prompt_format = resolve_prompt_format(lm.tokenizer, settings.eval.prompt_format)
    # The filter's judges, built as the filter builds them; an hf judge shares the loaded model.
    from emoneurons.evaluate.classify import classify

    judges = make_judges(settings.filter.judges, settings.model, cache, prompt_format, classify=classify, lm=lm)
    selected = selection.selection(settings.select.top_rate).per_emotion_counts()
    with model_from(params, settings.model.id):
        record = run_steering(lm, texts, plan, train, settings.eval, steer, selected, batch_size=settings.model.batch_size,
                              prompt_format=prompt_format, judges=judges)
    from emoneurons.report.steering.figure import save_steering_figure

    record = _with_settings(record, settings.eval, prompt_format, steer, settings.select.top_rate, settings.filter.judges, lm,
                            texts)
    record |= judge_metrics(judges)
    checked = check_steer(record, steer.alphas, steer.control_draws, source=STEER.path)  # named by its pipeline path whatever --out is
    with atomic_dir(out) as tmp:
        write_json(STEER.at(tmp), record)
        write_json(STEER_CHECKS.at(tmp), checks_record(checked))
        save_steering_figure(parse_steer(record), tmp)
    print("; ".join([_headline(record), *_summary_lines(record)]))


def _headline(record: dict) -> str:
    """What was generated and classified, counted from steer.json as the progress bars count it."""
    conditions = sum(len(entry["steered"]) + len(entry["controls"]) for entry in record["emotions"].values())
    prompts = len(record["prompts"])
    return (f"steer: (unmodified + {conditions} conditions) x {prompts} prompts = {(1 + conditions) * prompts} replies, "
            f"{record['classified']} distinct ones classified")


def _summary_lines(record: dict) -> list[str]:
    """Per emotion, its largest alpha's shifts and whether the replies' text broke."""
    lines = []
    for emotion, entry in record["emotions"].items():
        top = max(entry["steered"], key=lambda s: s["alpha"], default=None)
        if top is not None:
            judged = "".join(f", judge {name} {j['share_shift']:+.2f}" for name, j in top["judges"].items())
            coherence = top["coherence"]
            broke = " (text broke)" if coherence["text_broke"] else ""
            lines.append(f"{emotion} α={top['alpha']:g}: share {top['share_shift']:+.2f}, log p {top['logp_shift']}{judged}, "
                         f"log-lik/token {coherence['logp_per_token_shift']}{broke}")
    return lines


def _with_settings(record: dict, ev, prompt_format: str, steer, top_rate: float, judges, lm, texts: list[str]) -> dict:
    """steer.json: the run's settings (model, alphas, prompts, classifier, judges), then `record`."""
    return {"model": lm.name, "top_rate": top_rate, "alphas": list(steer.alphas),
            "max_new_tokens": steer.max_new_tokens, "control_draws": steer.control_draws, "prompts": texts,
            "classifier": {"method": ev.method, "shots": ev.shots, "label_format": ev.label_format, "calibrate": ev.calibrate,
                           "prompt_format": prompt_format},
            "judges": [{"name": spec.name, "backend": spec.backend, **({"method": spec.method} if spec.backend == "hf" else {})}
                       for spec in judges],
            **record}


if __name__ == "__main__":
    run_stage(main, "steer", Path(STEER_CACHE.path))
