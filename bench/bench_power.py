"""What the specificity test can resolve at a given test-split size: the smallest mean paired
difference (in standard deviations of the per-dialogue differences d_i) that the one-sided
sign-flip test detects in 80% of simulated conditions, at 0.05 and at the Holm threshold of the
first of m conditions (0.05 / m). Multiply by the sd of d_i measured on a run (eval.json:
vs_control, from the per-dialogue effects) to get it in nats of Δ log p.

    .venv/bin/python bench/bench_power.py --sizes 17 19 25 --conditions 48 --reps 200
"""

from __future__ import annotations

import argparse

import torch

from emoneurons.stats.effects import ALPHA, sign_flip_test


def power(n: int, shift: float, alpha: float, reps: int, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    hits = 0
    for rep in range(reps):
        d = torch.randn(n, generator=generator, dtype=torch.float64) + shift
        hits += sign_flip_test(d, seed=rep)[0] <= alpha
    return hits / reps


def smallest_detectable(n: int, alpha: float, reps: int, target: float = 0.8) -> float:
    shift = 0.2
    while power(n, -shift, alpha, reps, seed=n) < target:
        shift = round(shift + 0.1, 2)
    return shift


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[17, 19, 25])
    parser.add_argument("--conditions", type=int, default=48)
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for n in args.sizes:
        at_alpha = smallest_detectable(n, ALPHA, args.reps)
        at_holm = smallest_detectable(n, ALPHA / args.conditions, args.reps)
        print(f"n={n}: 80% power at mean(d) = -{at_alpha} sd (p <= {ALPHA}); -{at_holm} sd (p <= {ALPHA}/{args.conditions}, "
              f"Holm's first step)")


if __name__ == "__main__":
    main()
