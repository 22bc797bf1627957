"""select: LAPE identify on data/counts, one neuron set per masking ratio, into data/neurons/.

Named select_neurons.py: a stages/select.py would shadow the standard library's `select` module
for every `python stages/<name>.py` (Python puts the script's folder first on sys.path).
"""

from __future__ import annotations

from pathlib import Path

import typer

from emoneurons.emotions import EMOTIONS
from emoneurons.io.artifacts import COUNTS, NEURON_COUNTS, NEURONS, NEURONS_CHECKS
from emoneurons.io.atomic import atomic_dir, write_json
from emoneurons.io.neurons_file import neurons_record, ratio_key
from emoneurons.io.result_suites import check_neurons
from emoneurons.io.suites import checks_record
from emoneurons.io.tables import read_counts
from emoneurons.neurons.selection import select_emotion_neurons
from emoneurons.params import load_stage_params
from emoneurons.runtime.stage_run import run_stage


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (sections `select`, `eval.ratios`)"),
    counts: Path = typer.Option(COUNTS.folder, help="folder with counts.safetensors"),
    out: Path = typer.Option(NEURONS.folder, help="folder for neurons.json"),
    metrics: Path = typer.Option(Path(NEURON_COUNTS.path), help="per-emotion neuron counts"),
) -> None:
    settings = load_stage_params(params, ("select", "eval.ratios"))
    select, ratios = settings.select, sorted({settings.select.top_rate, *settings.eval.ratios})
    f, T = read_counts(counts)
    selections = {
        ratio: select_emotion_neurons(
            f, T, top_rate=ratio, filter_rate=select.filter_rate,
            activation_bar_ratio=select.activation_bar_ratio, assign=select.assign,
        )
        for ratio in ratios
    }
    record = neurons_record(top_rate=select.top_rate, assign=select.assign, layers=f.shape[0], neurons_per_layer=f.shape[1],
                            selections={ratio: selection.record() for ratio, selection in selections.items()})
    checked = check_neurons(record, source=NEURONS.path)  # named by its pipeline path whatever --out is
    with atomic_dir(out) as tmp:
        write_json(NEURONS.at(tmp), record)
        write_json(NEURONS_CHECKS.at(tmp), checks_record(checked))
    main_selection = selections[select.top_rate]
    write_json(metrics, {**{f"neurons_{e}": main_selection.per_emotion[e] for e in EMOTIONS}, "selected": main_selection.selected})
    per_emotion = ", ".join(f"{e} {main_selection.per_emotion[e]}" for e in EMOTIONS)
    # A neuron can be selected for several emotions: the per-emotion counts add up to more than the distinct neurons.
    print(f"select: {main_selection.selected} distinct neurons at top_rate {select.top_rate:g} (per emotion: {per_emotion}); "
          f"ratios {', '.join(map(ratio_key, selections))}")


if __name__ == "__main__":
    run_stage(main, "select")
