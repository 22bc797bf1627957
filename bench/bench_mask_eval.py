"""Benchmark of mask-eval's engine: tokens computed vs a naive run, and wall time per condition.

    .venv/bin/python bench/bench_mask_eval.py            # tiny random Llama + both embedded models
    .venv/bin/python bench/bench_mask_eval.py --model embedded-gemma3   # one of them (repeatable)
    .venv/bin/python bench/bench_mask_eval.py --tiny-only

Synthetic short dialogues (12 test; shots and calibration rows drawn from a synthetic train
split), the default eval params, and a synthetic neurons.json (random neurons per emotion). It runs the unmodified
condition and one sample condition per kind of start layer, times them, and reports for the whole
default plan the exact token counts (a run's cost is proportional to the layers it computes) and
the extrapolated wall time in this process (the stage splits the masks over `mask_workers`
single-threaded processes; `--threads 1` times what one of them does). Next to the unmodified run:
a plain decoder forward over the same tokens, in the same process.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import polars as pl  # noqa: E402
import torch  # noqa: E402
import typer  # noqa: E402

from emoneurons.emotions import EMOTIONS  # noqa: E402
from emoneurons.evaluate.calibration import calibration_dialogues  # noqa: E402
from emoneurons.evaluate.classify import MaskedClassifier  # noqa: E402
from emoneurons.evaluate.conditions import first_masked_layers, plan_conditions, unique_masks  # noqa: E402
from emoneurons.evaluate.shots import draw_shots  # noqa: E402
from emoneurons.io.neurons_file import parse_neurons
from emoneurons.model.architecture import decoder_layers, model_adapter  # noqa: E402
from emoneurons.params import load_params  # noqa: E402
from emoneurons.text.classification_prompt import classification_prompt  # noqa: E402

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")  # the default run's values

LINES = {
    "anger": ["A: You broke my bike again and lied about it!", "B: Stop yelling at me.", "A: I'm furious, this is outrageous!"],
    "disgust": ["A: There's mould all over the fridge.", "B: Ugh, that smell is revolting.", "A: I think I'm going to be sick."],
    "fear": ["A: Did you hear that noise downstairs?", "B: I'm terrified, someone is in the house.", "A: Lock the door, please."],
    "happiness": ["A: We won the championship!", "B: This is the best day of my life!", "A: I'm so happy for all of us."],
    "sadness": ["A: My grandmother passed away last night.", "B: I'm so sorry, I know how close you were.", "A: I miss her so much."],
    "surprise": ["A: You bought me a car?", "B: Surprise! Happy birthday!", "A: Wow, I never expected this at all!"],
}


def synthetic_split(per_emotion: int, offset: int, repeats: int = 1) -> pl.DataFrame:
    """`repeats` > 1: each dialogue's lines said that many times (prompts long enough that a
    sliding attention window binds, as the default data's longest prompts do on Gemma 3)."""
    rows = []
    for emotion, lines in LINES.items():
        for k in range(per_emotion):
            text = "\n".join(lines[: 2 + (k + offset) % 2] * repeats)
            rows.append({"id": f"{emotion}-{offset}-{k}", "label": emotion, "dialogue": text})
    return pl.DataFrame(rows)


def synthetic_neurons(n_layers: int, per_layer: int, ratios: list[float], seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    out = {"top_rate": ratios[0], "layers": n_layers, "neurons_per_layer": per_layer, "ratios": {}}
    for ratio in ratios:
        total = round(ratio * n_layers * per_layer)
        neurons = {}
        for emotion in EMOTIONS:
            flat = torch.randperm(n_layers * per_layer, generator=generator)[: total // 3]
            neurons[emotion] = sorted([int(i) // per_layer, int(i) % per_layer] for i in flat)
        out["ratios"][f"{ratio:g}"] = {"selected": len({tuple(p) for v in neurons.values() for p in v}), "neurons": neurons}
    return out


@torch.inference_mode()
def plain_forward_seconds(lm, engine: MaskedClassifier) -> float:
    """A plain forward of the decoder (model.model) over the tokens the engine's unmodified run
    computes: the prefix once, each padded dialogue batch without it (so less attention)."""
    start = time.perf_counter()
    lm.model.model(engine.prefix_ids)
    for batch in engine.batches:
        lm.model.model(batch.ids)
    return time.perf_counter() - start


def bench(lm, label: str, batch_size: int, repeats: int = 1) -> None:
    params, top_rate = PARAMS.eval, PARAMS.select.top_rate
    n_layers = len(decoder_layers(lm.model))
    per_layer = lm.model.config.intermediate_size
    neurons = synthetic_neurons(n_layers, per_layer, sorted({top_rate, *params.ratios}))
    # Matched controls draw by P(active): a synthetic one (their cost does not depend on which neurons).
    p_active = torch.rand(n_layers, per_layer, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    plan = plan_conditions(parse_neurons(neurons), params, top_rate, n_layers, p_active)
    groups = unique_masks(plan)
    test, train = synthetic_split(2, offset=1, repeats=repeats), synthetic_split(5, offset=0, repeats=repeats)
    shots = draw_shots(train, params.shots, params.seed, params.shot_selection)
    prompt = classification_prompt(lm.tokenizer, shots, params.shot_instruction, prompt_format="chat")
    engine = MaskedClassifier(lm, prompt, test["dialogue"].to_list(), params.method, batch_size=batch_size,
                              boundaries=first_masked_layers(plan), label_format=params.label_format,
                              reference=calibration_dialogues(train, params, shots), recalibrate=params.recalibrate, max_new_tokens=8)
    lengths = [int(b.lengths.sum()) for b in engine.batches]
    print(f"[{label}] {n_layers} layers; prefix {len(prompt.prefix)} tokens, {len(test)} test dialogues "
          f"({sum(lengths)} dialogue+suffix tokens); plan: {len(plan)} conditions, {len(groups)} distinct masks")
    window = model_adapter(lm.model).sliding_window
    longest = len(prompt.prefix) + max(len(r) for r in engine.row_ids)
    if window is not None:
        print(f"  sliding window {window} on {sum(w is not None for w in model_adapter(lm.model).layer_windows)} of {n_layers} layers; "
              f"longest prompt {longest} tokens: the window {'binds' if longest > window else 'does not bind'}; engine {engine.engine}")
    start = time.perf_counter()
    full = engine.classify()
    base_time = time.perf_counter() - start
    print(f"  unmodified: {base_time:6.2f} s, {full.tokens_computed} tokens (naive {full.tokens_naive}); "
          f"{full.tokens_computed / base_time:.0f} tokens/s; predicted {sum(p == t for p, t in zip(full.predicted, test['label']))}/{len(test)} right")
    plain = plain_forward_seconds(lm, engine)
    print(f"  plain decoder forward over the same tokens (prefix and each padded batch as separate sequences): "
          f"{plain:6.2f} s, {full.tokens_computed / plain:.0f} tokens/s; engine / plain time {base_time / plain:.2f}")
    # One sample per start layer; the cost of a run is (layers computed / all layers) of a full one.
    starts: dict[int, list] = {}
    for _key, members in list(groups.items())[1:]:
        starts.setdefault(engine.start_layer(members[0].neurons), []).append(members[0])
    seconds, tokens, naive_masked = {}, {}, 0
    for k, members in sorted(starts.items()):
        t = time.perf_counter()
        result = engine.classify(members[0].neurons)
        seconds[k], tokens[k], naive_masked = time.perf_counter() - t, result.tokens_computed, result.tokens_naive
        print(f"  start layer {k:2d}: {len(members):3d} masks, e.g. {members[0].id}: {seconds[k]:6.2f} s, {result.tokens_computed} tokens")
    # Every masked run of one start layer computes the same tokens (the same rows through the same layers).
    computed = full.tokens_computed + sum(len(m) * tokens[k] for k, m in starts.items())
    naive = full.tokens_naive + (len(plan) - 1) * naive_masked
    total = base_time + sum(len(m) * seconds[k] for k, m in starts.items())
    print(f"  whole default plan: tokens computed {computed} vs naive {naive} = {computed / naive:.3f}; "
          f"estimated wall {total:.0f} s ({total / len(groups):.1f} s per distinct mask)")


def main(tiny_only: bool = typer.Option(False, help="only the tiny random Llama"), batch_size: int = 16,
         threads: int = typer.Option(0, help="torch threads for the embedded models (0: torch's default)"),
         model: list[str] = typer.Option(["embedded", "embedded-gemma3"], help="model.id of an embedded model (repeatable)"),
         repeats: int = typer.Option(1, help="say each synthetic dialogue's lines this many times (longer prompts)")) -> None:
    default_threads = torch.get_num_threads()
    from emoneurons.model.loading import LoadedModel, load_model
    from helpers import tiny_models  # tests/helpers/: the tiny model builders

    tokenizer = tiny_models.build_tokenizer()
    tiny = LoadedModel(tiny_models.build_tiny_llama(len(tokenizer), layers=6), tokenizer, "tiny")
    torch.set_num_threads(1)
    bench(tiny, "tiny random Llama", batch_size)
    if not tiny_only:
        torch.set_num_threads(threads or default_threads)
        for model_id in model:
            lm = load_model(PARAMS.model.model_copy(update={"id": model_id}))
            bench(lm, f"{lm.name} (model.id {model_id}), {torch.get_num_threads()} thread(s)", batch_size, repeats)


if __name__ == "__main__":
    typer.run(main)
