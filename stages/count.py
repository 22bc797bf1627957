"""count: per-emotion activation counts f [layers, neurons, 6] and T [6] on the train split."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import typer

from emoneurons.emotions import EMOTIONS
from emoneurons.io.artifacts import COUNT_CHECKS, COUNT_META, COUNTS, TRAIN
from emoneurons.io.atomic import atomic_dir
from emoneurons.io.suites import check_counts, checks_record
from emoneurons.model.loading import load_model
from emoneurons.neurons.count_inputs import ParquetDialogues
from emoneurons.neurons.counting import count_dialogues
from emoneurons.params import load_stage_params
from emoneurons.runtime.checkpoint import DEFAULT_ROOT
from emoneurons.runtime.compute import compute_record, pin_threads
from emoneurons.runtime.distributed import relaunch_if_requested, start
from emoneurons.runtime.resume import CountSchedule, count_checkpoints
from emoneurons.runtime.stage_run import model_from, run_stage
from emoneurons.text.nrc_lexicon import cue_words
from emoneurons.text.prompt_format import resolve_prompt_format


def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file (sections `model`, `count`)"),
    train: Path = typer.Option(Path(TRAIN.path), help="train split"),
    out: Path = typer.Option(COUNTS.folder, help="folder for counts.safetensors and meta.json"),
    checkpoints: Path = typer.Option(DEFAULT_ROOT, help="folder for partial counts kept across a kill (not an out)"),
) -> None:
    from safetensors.torch import save_file

    settings = load_stage_params(params, ("model", "count", "eval.prompt_format"))
    with model_from(params, settings.model.id):
        pin_threads()  # float results depend on it: one count for the whole run, recorded in meta.json
        model_params, count = settings.model, settings.count
        dialogues = ParquetDialogues(train)  # its emotions read and checked now; the texts a piece at a time
        skip_cues = cue_words() if count.skip_cue_tokens else None  # a missing lexicon: before the model loads
        ranks = start(model_params.device)  # one process, or one of `accelerate launch`'s
        saved = count_checkpoints(checkpoints, model_params, count, settings.eval.prompt_format, train)
        if ranks.main:
            saved.drop_stale()
        lm = load_model(model_params.model_copy(update={"device": ranks.model_device(model_params.device)}),
                        padding_masks_only=True)  # counting passes 2D padding masks: flash-attention may run it
        # eval.prompt_format, resolved for this model once: what is counted and what meta.json says
        prompt_format = resolve_prompt_format(lm.tokenizer, settings.eval.prompt_format) if count.text == "prompt" else None
        f, T, cut = count_dialogues(
            lm, dialogues, positions=count.positions, text=count.text, activation=count.activation,
            batch_size=model_params.batch_size, max_length=model_params.max_length, desc="count",
            prompt_format=prompt_format, schedule=CountSchedule(ranks, saved, count.checkpoint_every),
            skip_cues=skip_cues,
        )
        # checks.json names the counts by their pipeline path whatever --out is, so counts written to
        # another folder (a resumed run, another launcher) are the same bytes.
        checked = check_counts(f, T, source=COUNTS.path) if ranks.main else None
    if not ranks.main:  # rank 0 alone writes; the others wait for it, then leave
        ranks.barrier()
        return
    meta = {
        "model": lm.name,
        "activation": count.activation,
        "positions": count.positions,
        "text": count.text,
        "skip_cue_tokens": count.skip_cue_tokens,  # NRC cue words' tokens left out of f and T
        # Which format the counted prompt had (text: prompt only; the bare dialogue has none).
        **({"prompt_format": prompt_format} if prompt_format is not None else {}),
        "dialogues": dict(zip(EMOTIONS, np.bincount(dialogues.emotions(), minlength=len(EMOTIONS)).tolist())),
        "tokens": dict(zip(EMOTIONS, T.tolist())),
        "layers": f.shape[0],
        "neurons": f.shape[1],
        "truncated": cut.record(),  # dialogues cut to model.max_length (docs/CONTRACTS.md)
        "compute": compute_record(lm.device),  # threads, kernels, torch: what else the counts depend on
    }
    # One folder renamed into place whole: the counts and their meta never disagree.
    with atomic_dir(out) as tmp:
        save_file({"f": f, "T": T}, COUNTS.at(tmp))
        COUNT_META.at(tmp).write_text(json.dumps(meta, indent=2) + "\n")
        COUNT_CHECKS.at(tmp).write_text(json.dumps(checks_record(checked), indent=2) + "\n")
    ranks.barrier()  # every rank is past its last save
    saved.remove()
    if cut.dialogues:
        print(cut.describe(len(dialogues), "count"), file=sys.stderr)
    tokens = ", ".join(f"{e} {t}" for e, t in zip(EMOTIONS, T.tolist()))
    print(f"count: {len(dialogues)} dialogues, {int(T.sum())} counted tokens ({tokens}); f {list(f.shape)}")


if __name__ == "__main__":
    relaunch_if_requested(__file__, sys.argv[1:])
    run_stage(main, "count")
