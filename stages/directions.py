"""directions: each emotion's direction in the residual stream at every layer, the six directions'
geometry (separation by layer, PCA at the strongest layer, is PC1 valence?), and whether each
emotion's neurons write along its direction, against control draws (docs/METHOD.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from emoneurons.io.artifacts import COUNTS, DIRECTION_META, DIRECTION_SUMS, DIRECTIONS, NEURONS, TRAIN
from emoneurons.io.atomic import atomic_dir, atomic_path, write_json
from emoneurons.io.directions_file import disabled_record
from emoneurons.io.neurons_file import read_neurons
from emoneurons.neurons.count_inputs import ParquetDialogues
from emoneurons.params import load_stage_params
from emoneurons.runtime.compute import compute_record, pin_threads
from emoneurons.runtime.stage_run import model_from, run_stage


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (sections `model`, `directions`)"),
    train: Path = typer.Option(Path(TRAIN.path), help="train split"),
    counts: Path = typer.Option(COUNTS.folder, help="count's folder (P(active) for the control draws)"),
    neurons: Path = typer.Option(Path(NEURONS.path), help="select's neurons"),
    out: Path = typer.Option(DIRECTION_SUMS.folder, help="folder for class_sums.safetensors and meta.json"),
    summary: Path = typer.Option(Path(DIRECTIONS.path), help="the summary the report and the atlas read"),
) -> None:
    settings = load_stage_params(params, ("model", "count.text", "count.positions", "count.skip_cue_tokens",
                                          "eval.prompt_format", "eval.controls", "eval.activity_bins", "select.top_rate",
                                          "directions"))
    with model_from(params, settings.model.id):
        options, top_rate = settings.directions, settings.select.top_rate
        if not options.enabled:
            with atomic_dir(out) as tmp:
                write_json(DIRECTION_META.at(tmp), disabled_record())
            write_json(summary, disabled_record())
            print("directions: off (directions.enabled: false); nothing computed", file=sys.stderr)
            return
        from emoneurons.neurons.direction_run import SummedTokens, run_directions  # torch only when on

        dialogues = ParquetDialogues(train)  # its emotions read and checked now, before the model loads; texts a piece at a time
        pin_threads()
        tokens = SummedTokens(text=settings.count.text, positions=settings.count.positions,
                              skip_cue_tokens=settings.count.skip_cue_tokens, prompt_format=settings.eval.prompt_format)
        # The control draws: mask-eval's null (eval.controls' first kind), in its P(active) bins.
        result = run_directions(settings.model, tokens, options, train=dialogues, counts=counts, neurons=read_neurons(neurons),
                                top_rate=top_rate, control=settings.eval.controls[0], activity_bins=settings.eval.activity_bins)
    from safetensors.torch import save_file

    with atomic_dir(out) as tmp:
        save_file(result.sums.tensors(), DIRECTION_SUMS.at(tmp))
        write_json(DIRECTION_META.at(tmp), {"model": result.model, "compute": compute_record(result.device)})
    with atomic_path(summary) as tmp:
        tmp.write_text(result.json())
    print(result.describe())


if __name__ == "__main__":
    run_stage(main, "directions")
