"""The nulls on a default run's data: how active the selected neurons are against each control
kind, how much an effect moves between control draws, and what extra draws cost.

    .venv/bin/python bench/bench_nulls.py                       # after `make run` (or dvc repro select)
    .venv/bin/python bench/bench_nulls.py --draws 10 --workers 2

Reads data/counts, data/neurons/neurons.json and data/split of this checkout and the default
params.yaml; loads the model of params.yaml (the embedded SmolLM2 by default). Prints:
1. per emotion, its neurons at select.top_rate (all layers): mean P(active) over all train tokens
   and median within-layer percentile of P(active), and the same for its first uniform and first
   matched control (the plan's draw 0);
2. per emotion, the set's mean Δ log p(masked label) over the test dialogues and that of
   `--draws` control draws of each kind (min, max, sd), the draws as mask-eval plans them;
3. the cost: seconds of the unmodified run (it keeps the states masked runs start from), of each
   masked run on average, and tokens computed against a from-scratch run, as ratios.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import polars as pl  # noqa: E402
import torch  # noqa: E402
import typer  # noqa: E402

from emoneurons.emotions import EMOTIONS  # noqa: E402
from emoneurons.evaluate.classify import Mask  # noqa: E402
from emoneurons.evaluate.conditions import control_neurons, mask_id, plan_conditions  # noqa: E402
from emoneurons.evaluate.draw_null import MeanEffect  # noqa: E402
from emoneurons.evaluate.mask_pool import classify_masks  # noqa: E402
from emoneurons.evaluate.masking_eval import _test_run  # noqa: E402
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.io.tables import read_counts, read_json  # noqa: E402
from emoneurons.neurons.selection import overall_activation_probability  # noqa: E402
from emoneurons.params import load_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def within_layer_percentile(p_active: torch.Tensor) -> torch.Tensor:
    """[layers, neurons]: each neuron's percentile of P(active) in its layer (0 quietest, 100 busiest; ties by index)."""
    n = p_active.shape[1]
    order = torch.sort(p_active, dim=1, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n).expand_as(order))
    return rank.to(torch.float64) * 100 / (n - 1)


def activity(neurons: dict[int, torch.Tensor], p_active: torch.Tensor, percentile: torch.Tensor) -> tuple[float, float]:
    layers = torch.cat([torch.full((len(i),), layer) for layer, i in neurons.items()])
    index = torch.cat(list(neurons.values()))
    return float(p_active[layers, index].mean()), float(percentile[layers, index].median())


class _Progress:
    def update(self, n: int) -> None:
        pass


def main(draws: int = typer.Option(10, help="control draws of each kind per emotion"),
         workers: int = typer.Option(1, help="forked single-threaded workers for the masked runs (1: in process)"),
         root: Path = typer.Option(REPO, help="the checkout whose data/ to read")) -> None:
    params = load_params(root / "params.yaml")
    eval_params = params.eval.model_copy(update={"controls": ("matched", "uniform"), "control_draws": draws})
    top_rate = params.select.top_rate
    p_active = overall_activation_probability(*read_counts(root / "data/counts"))
    percentile = within_layer_percentile(p_active)
    neurons_json = read_json(root / "data/neurons/neurons.json")
    plan = {c.id: c for c in plan_conditions(parse_neurons(neurons_json), eval_params.model_copy(update={"control_draws": 1}), top_rate,
                                             int(neurons_json["layers"]), p_active)}
    print(f"1. P(active) over all train tokens; neurons at select.top_rate {top_rate:g}, all layers "
          f"(layer mean over all neurons: {float(p_active.mean()):.3f})")
    print("| emotion | neurons | set: mean P | set: median pct | uniform d0: mean P | median pct | matched d0: mean P | median pct |")
    print("|---|---|---|---|---|---|---|---|")
    for emotion in EMOTIONS:
        mask = plan[mask_id(emotion, top_rate, "all")]
        if not mask.n_neurons:
            print(f"| {emotion} | 0 | | | | | | |")
            continue
        cells = [activity(c.neurons, p_active, percentile) for c in
                 (mask, plan[f"control{mask.id.removeprefix('mask')}-d0"], plan[f"matched{mask.id.removeprefix('mask')}-d0"])]
        print(f"| {emotion} | {mask.n_neurons} | " + " | ".join(f"{m:.3f} | {pct:.1f}" for m, pct in cells) + " |")

    from emoneurons.model.loading import load_model

    torch.set_num_threads(1)
    lm = load_model(params.model)
    train, test = pl.read_parquet(root / "data/split/train.parquet"), pl.read_parquet(root / "data/split/test.parquet")
    masks = [plan[mask_id(e, top_rate, "all")] for e in EMOTIONS if plan[mask_id(e, top_rate, "all")].n_neurons]
    run = _test_run(lm, train, test, eval_params, list(plan.values()), batch_size=params.model.batch_size,
                    max_length=params.model.max_length, train_name="train")
    engine = run.engine(range(test.height))  # every test dialogue in one engine (the default's size)
    start = time.perf_counter()
    base = engine.classify()
    unmodified_s = time.perf_counter() - start
    effect = MeanEffect(base.predicted, base.scores)
    runs = [Mask(m.neurons) for m in masks]
    slots = [(m, None, None) for m in masks]
    for kind in ("uniform", "matched"):
        for m in masks:
            for d in range(draws):
                runs.append(Mask(control_neurons(kind, m, d, eval_params, int(neurons_json["neurons_per_layer"]), p_active)))
                slots.append((m, kind, d))

    def reduce(index: int, result) -> tuple[float, int, int]:
        return effect(result.predicted, result.scores, slots[index][0].masked), result.tokens_computed, result.tokens_naive

    start = time.perf_counter()
    reduced = classify_masks(engine, runs, workers, _Progress(), reduce=reduce)
    masked_s = time.perf_counter() - start
    print(f"\n2. mean Δ log p(masked label) over the {test.height} test dialogues; {draws} draws of each kind")
    print("| emotion | set | uniform: min | max | sd | set's rank | matched: min | max | sd | set's rank |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    by_slot = {(m.id, kind, d): value for (m, kind, d), (value, _, _) in zip(slots, reduced)}
    for m in masks:
        own = by_slot[m.id, None, None]
        cells = []
        for kind in ("uniform", "matched"):
            values = [by_slot[m.id, kind, d] for d in range(draws)]
            rank = 1 + sum(v <= own for v in values)
            cells.append(f"{min(values):+.3f} | {max(values):+.3f} | {statistics.stdev(values):.3f} | {rank} of {draws + 1}")
        print(f"| {m.masked} | {own:+.3f} | " + " | ".join(cells) + " |")
    tokens = sum(t for _, t, _ in reduced)
    naive = sum(n for _, _, n in reduced)
    per_run = masked_s / len(runs) * workers
    print(f"\n3. cost ({torch.get_num_threads()} thread(s) a process, {workers} worker(s)): unmodified run {unmodified_s:.2f} s "
          f"({base.tokens_computed} tokens; naive {base.tokens_naive}); {len(runs)} masked runs in {masked_s:.1f} s, "
          f"{per_run:.2f} s of one process a run; a run / the unmodified run = {per_run / unmodified_s:.2f}; tokens a run "
          f"{tokens / len(runs):.0f} of naive {naive / len(runs):.0f} = {tokens / naive:.3f}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", file=sys.stderr)


if __name__ == "__main__":
    typer.run(main)
