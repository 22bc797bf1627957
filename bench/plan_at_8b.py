"""mask-eval's plan at the Llama-3.1-8B shape, counted (no model, no data): the conditions of
params.yaml's eval, the draw-level null's extra runs, and the layer each distinct mask starts from
(layer reuse computes only the layers from there). Random selected neurons of each ratio's size
stand in for select's; the counts depend on the sizes, not on which neurons.

    .venv/bin/python bench/plan_at_8b.py [params.yaml] [--layers 32 --ffn 14336]
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch

from emoneurons.emotions import EMOTIONS
from emoneurons.evaluate.conditions import plan_conditions, unique_masks
from emoneurons.evaluate.draw_null import NullDraws
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default="params.yaml")
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--ffn", type=int, default=14336)
    args = parser.parse_args()
    params = load_params(args.params)
    ev, top, layers, ffn = params.eval, params.select.top_rate, args.layers, args.ffn
    generator = torch.Generator().manual_seed(0)
    ratios = {}
    for ratio in sorted({top, *ev.ratios}):
        chosen = {}
        for emotion in EMOTIONS:
            flat = torch.randperm(layers * ffn, generator=generator)[: round(ratio * layers * ffn / len(EMOTIONS))]
            chosen[emotion] = sorted([int(i) // ffn, int(i) % ffn] for i in flat)
        ratios[f"{ratio:g}"] = {"selected": sum(map(len, chosen.values())), "neurons": chosen}
    neurons = parse_neurons({"top_rate": top, "assign": "lape", "layers": layers, "neurons_per_layer": ffn, "ratios": ratios})
    p_active = torch.rand(layers, ffn, generator=generator)
    plan = plan_conditions(neurons, ev, top, layers, p_active)
    masks = [members[0] for members in unique_masks(plan).values() if members[0].neurons]
    starts = Counter(min(mask.neurons) for mask in masks)
    extra = len(NullDraws(plan, ev, top, ffn, p_active).masks) if ev.null_draws else 0
    passes = 1 + sum(n * (layers - start) / layers for start, n in starts.items()) + extra
    print(f"{args.params} at {layers} layers x {ffn}: {len(plan)} conditions ({len(masks)} distinct masks), "
          f"{extra} extra null draws; masks by first layer {dict(sorted(starts.items()))}; "
          f"full-pass equivalents (score, layer reuse; extra draws from layer 0) {passes:.1f}")


if __name__ == "__main__":
    main()
