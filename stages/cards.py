"""cards: each emotion's top selected neurons with what they fire on in the train split
(reports/cards/index.html and cards.json)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from emoneurons.io.artifacts import CARDS, CARDS_CHECKS, CARDS_PAGE, COUNTS, NEURONS, TRAIN
from emoneurons.io.atomic import atomic_dir, write_json
from emoneurons.io.neurons_file import read_neurons
from emoneurons.io.result_suites import check_cards
from emoneurons.io.suites import checks_record
from emoneurons.io.tables import DataError, label_column, read_counts, rows_at, table_batches, table_columns, table_rows
from emoneurons.params import load_stage_params
from emoneurons.report.cards.cards_json import build_cards, plan_cards
from emoneurons.report.cards.page import render_cards_html
from emoneurons.runtime.stage_run import model_from, run_stage


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (sections model, cards; select.top_rate)"),
    train: Path = typer.Option(Path(TRAIN.path), help="the dialogues the contexts come from"),
    counts: Path = typer.Option(COUNTS.folder, help="folder with counts.safetensors (P, entropy)"),
    neurons: Path = typer.Option(Path(NEURONS.path), help="selected neurons"),
    out: Path = typer.Option(CARDS.folder, help="folder for index.html and cards.json"),
) -> None:
    settings = load_stage_params(params, ("model", "select.top_rate", "cards"))
    with model_from(params, settings.model.id):
        cards = settings.cards
        # The train split is searched a piece at a time: only its size and columns are read now.
        dialogues, columns = table_rows(train), table_columns(train)
        label = label_column(columns)
        missing = [c for c in ("id", label, "dialogue") if c not in columns]
        if missing:
            raise DataError(f"{train}: no column {missing[0]!r} (has {', '.join(columns)})")
        selection = read_neurons(neurons)
        f, T = read_counts(counts)
        from emoneurons.neurons.selection import activation_probability, neuron_entropy

        P = activation_probability(f, T)
        entropy = neuron_entropy(P)
        plan = plan_cards(selection, settings.select.top_rate, P, entropy, cards.top_neurons)
        from emoneurons.model.loading import load_model  # imports torch/transformers: after the cheap checks
        from emoneurons.neurons.top_activations import PIECE_DIALOGUES, neuron_activity
        from emoneurons.runtime.compute import pin_threads

        pin_threads()  # EMONEURONS_THREADS: a shared machine's runs take one thread each
        lm = load_model(settings.model)
        chosen = sorted({neuron for pairs in plan.values() for neuron in pairs})
        pieces = (batch["dialogue"].to_list() for batch in table_batches(train, rows=PIECE_DIALOGUES, columns=["dialogue"]))
        activity = neuron_activity(lm, pieces, chosen, k=cards.contexts, batch_size=settings.model.batch_size,
                                   max_length=settings.model.max_length, desc="cards", total=dialogues)
        # Ids and labels of the dialogues the contexts come from (at most contexts x neurons of them).
        top = rows_at(train, sorted(activity.fed), ["id", label])
        rows = dict(zip(sorted(activity.fed), top.iter_rows()))
        emotions = build_cards(plan, activity, P, entropy, lm.tokenizer, {d: row[0] for d, row in rows.items()},
                               {d: row[1] for d, row in rows.items()},
                               selection.selection(settings.select.top_rate).per_emotion_counts(),
                               window=cards.window, top_tokens=cards.top_tokens, min_token_count=cards.min_token_count)
    record = {"model": lm.name, "top_rate": settings.select.top_rate, "top_neurons": cards.top_neurons,
              "contexts": cards.contexts, "window": cards.window, "min_token_count": cards.min_token_count,
              "split": "train", "dialogues": dialogues, "tokens": activity.tokens,
              "truncated": activity.truncated.record(),  # dialogues cut to model.max_length, as count reports them
              "emotions": emotions}
    checked = check_cards(record, layers=f.shape[0], neurons_per_layer=f.shape[1], source=CARDS.path)  # named by its pipeline path whatever --out is
    with atomic_dir(out) as tmp:
        write_json(CARDS.at(tmp), record)
        write_json(CARDS_CHECKS.at(tmp), checks_record(checked))
        CARDS_PAGE.at(tmp).write_text(render_cards_html(record), encoding="utf-8")
    if activity.truncated.dialogues:
        print(activity.truncated.describe(dialogues, "cards"), file=sys.stderr)
    shown = ", ".join(f"{e} {len(v['cards'])}" for e, v in emotions.items())
    cards_made = sum(len(v["cards"]) for v in emotions.values())
    # A neuron selected for two emotions has a card in each: cards and distinct neurons can differ.
    print(f"cards: {cards_made} cards ({shown}) of {len(chosen)} distinct neurons over {dialogues} train dialogues; "
          f"wrote {out}/index.html")


if __name__ == "__main__":
    run_stage(main, "cards")
