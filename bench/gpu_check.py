"""One command for whoever is lent a GPU: `make gpu-check`. In one process, in
under 8 minutes on one H100/H200 (a budget the script keeps: a check that would start after it is
recorded as not run), it runs

- `bench_8b`: bench/bench_gpu.py at the Llama-3.1-8B shape (random weights, bf16): plain forward,
  counting and masked classification tokens/s, their ratios to plain, MFU, host syncs;
- `attention_kernel`: the shared-prefix engine's log-sum-exp attention kernel for the device
  (`cuda_efficient` on CUDA) against torch's scaled_dot_product_attention and the float32 math
  kernel, float32 and bfloat16, at the 8B head size;
- `engine`: mask-eval's classifier on the device against the CPU on a tiny random Llama: float32
  label scores within 1e-4 and the same predictions, unmodified and masked (layer reuse), score and
  generate; bfloat16 predictions the same as the CPU's in bfloat16;
- `count`, `mask_eval`, `steer`: the library bodies of those stages on a tiny model loaded by
  `load_model` with `model.device: <device>` (a device map, float32), against the same on the CPU;

and writes every figure into one JSON (--out, rewritten after each check). On the CUDA machine
image there is no package index: its own torch/transformers/accelerate/... are used, and the
packages it lacks (polars, pydantic) come from the wheels `make gpu-wheels` put in gpu-wheels/
(extracted into gpu-wheels/site, put first on sys.path). `--device cpu` runs the same script on
the CPU with the tiny shape for bench_8b (tests/project/test_gpu_check.py), so it is known to work before
a card is lent; its figures are no GPU estimate.
"""

from __future__ import annotations

import datetime
import gc
import importlib
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for env, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(env, value)

NEEDED = ("torch", "transformers", "accelerate", "typer", "yaml", "safetensors", "tokenizers", "scipy", "tqdm",
          "pytest", "polars", "pydantic")
BUDGET_S = 450.0  # of the 8 minutes: the rest is start-up and the JSON


def use_wheels(folder: Path) -> None:
    """Each wheel in `folder` extracted once into folder/site (a wheel is a zip of the files an
    install puts in site-packages), which goes first on sys.path. Called only when this Python
    lacks a needed package: the wheels are cp312 builds for the CUDA image, not for a dev venv."""
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if not wheels:
        return
    site = folder / "site"
    for wheel in wheels:
        marker = site / f".extracted-{wheel.name}"
        if not marker.exists():
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(site)
            marker.touch()
    sys.path.insert(0, str(site))


def missing_modules() -> list[str]:
    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):
            return True

    return [name for name in NEEDED if absent(name)]


def write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.replace(path)


# -- the checks -------------------------------------------------------------------------------


def check_bench_8b(device: str) -> dict:
    import bench_gpu

    on_gpu = device.startswith("cuda")
    figures = bench_gpu.measure(tiny=not on_gpu, layers=None, device=device, dtype="", dialogues=256 if on_gpu else 8,
                                repeat_turns=8 if on_gpu else 1, batch_size=16 if on_gpu else 4, peak=None)
    targets = {"count_ratio_to_plain >= 0.98": figures["count_ratio_to_plain"] >= 0.98,
               "count_tokens_per_s >= 33000": figures["count_tokens_per_s"] >= 33000,
               "masked_ratio_to_plain >= 0.95": figures["masked_ratio_to_plain"] >= 0.95}
    # The targets are the project's, for the 8B shape on an H100/H200-class card; the check passes
    # when the bench ran (the figures are what this JSON is for), the targets are reported beside.
    return {"pass": True, "shape": "Llama-3.1-8B" if on_gpu else "tiny (cpu run)", **figures,
            "targets_met": targets if on_gpu else None}


def check_attention_kernel(device: str) -> dict:
    import torch
    import torch.nn.functional as F

    from emoneurons.evaluate import shared_prefix_attention as spa

    kernel = spa.kernel_for(torch.device(device))
    generator = torch.Generator().manual_seed(0)
    out: dict = {"kernel": kernel}
    ok = True
    for dtype, tol_out, tol_lse in ((torch.float32, 1e-4, 1e-3), (torch.bfloat16, 2e-2, 5e-2)):
        for name, (q_shape, kv_shape, causal) in {
            "own_causal": ((2, 32, 96, 128), (2, 32, 96, 128), True),
            "prefix_one_long_query": ((1, 8, 2 * 4 * 96, 128), (1, 8, 200, 128), False),
        }.items():
            q, k, v = (torch.randn(shape, generator=generator).to(device=device, dtype=dtype) for shape in (q_shape, kv_shape, kv_shape))
            scale = q_shape[-1] ** -0.5
            got, lse = spa.attention_with_lse(q, k, v, causal=causal, scale=scale)
            expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
            _, lse_math = spa.math_attention_with_lse(q, k, v, causal=causal, scale=scale)
            diff_out = float((got.float() - expected.float()).abs().max())
            diff_lse = float((lse.float() - lse_math).abs().max())
            passed = diff_out <= tol_out and diff_lse <= tol_lse
            ok &= passed
            out[f"{name}_{str(dtype).removeprefix('torch.')}"] = {
                "max_abs_diff_vs_sdpa": diff_out, "max_abs_diff_lse_vs_math": diff_lse, "tolerance": [tol_out, tol_lse],
                "pass": passed}
    out["fell_back_to_math"] = list(getattr(spa, "_efficient_failed", []))
    out["pass"] = ok and not out["fell_back_to_math"]
    return out


def _samples() -> tuple[list[str], list[str]]:
    """One short dialogue per emotion and its label, the CUDA-vs-CPU tests' (tests/helpers/tiny_models.py)."""
    from helpers.tiny_models import SIX_EMOTION_DIALOGUES, SIX_EMOTION_LABELS

    return SIX_EMOTION_DIALOGUES, SIX_EMOTION_LABELS


def _tiny(dtype=None, device: str = "cpu"):
    import torch

    from emoneurons.model.loading import LoadedModel
    from helpers.tiny_models import build_tiny_llama, build_tokenizer

    threads = torch.get_num_threads()
    tokenizer = build_tokenizer()
    torch.set_num_threads(threads)  # as the caller had it, whatever the imports set
    model = build_tiny_llama(len(tokenizer), layers=4, hidden=64, intermediate=128)
    model.config.pad_token_id = tokenizer.pad_token_id
    model = model.to(device=device, dtype=dtype or torch.float32)
    return LoadedModel(model=model, tokenizer=tokenizer, name="tiny random Llama")


def _classify(lm, method: str, masks: list) -> list:
    from emoneurons.evaluate.classify import MaskedClassifier
    from emoneurons.text.classification_prompt import classification_prompt

    DIALOGUES, _ = _samples()
    prompt = classification_prompt(lm.tokenizer, [(DIALOGUES[1], "happiness"), (DIALOGUES[2], "disgust")], prompt_format="chat")
    engine = MaskedClassifier(lm, prompt, DIALOGUES, method, batch_size=4, boundaries=[2], max_new_tokens=4, label_format="bare", recalibrate=False)
    return [engine.classify(mask) for mask in [None, *masks]] + [engine.engine]


def check_engine(device: str) -> dict:
    import torch

    masks = [{2: torch.tensor([1, 7, 30]), 3: torch.tensor([4, 11])}, {0: torch.tensor([3]), 3: torch.tensor([9])}]
    out: dict = {}
    ok = True
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        cpu_runs = _classify(_tiny(dtype), "score", masks)
        dev_runs = _classify(_tiny(dtype, device), "score", masks)
        same = [a.predicted == b.predicted for a, b in zip(cpu_runs[:-1], dev_runs[:-1])]
        diff = max(float((a.scores.float() - b.scores.float()).abs().max()) for a, b in zip(cpu_runs[:-1], dev_runs[:-1]))
        entry = {"engine": dev_runs[-1], "runs": len(same), "same_predictions": same, "max_abs_score_diff": diff}
        if dtype == torch.float32:
            entry["pass"] = all(same) and diff <= 1e-4
            generated_cpu = _classify(_tiny(dtype), "generate", masks[:1])
            generated_dev = _classify(_tiny(dtype, device), "generate", masks[:1])
            entry["generate_same_answers"] = [a.answers == b.answers for a, b in zip(generated_cpu[:-1], generated_dev[:-1])]
            entry["pass"] &= all(entry["generate_same_answers"])
        else:
            entry["pass"] = all(same)
        ok &= entry["pass"]
        out[name] = entry
    out["pass"] = ok
    return out


def _loaded(device: str, folder: Path):
    """The tiny model saved once, then loaded as a stage loads it: load_model with model.device."""
    from emoneurons.model.loading import load_model

    if not (folder / "config.json").exists():
        lm = _tiny()
        lm.model.save_pretrained(folder)
        lm.tokenizer.save_pretrained(folder)
    return load_model(_params().model.model_copy(update={"id": str(folder), "device": device, "dtype": "float32"}))


def _params():
    import yaml

    from emoneurons.params import parse_params

    return parse_params(yaml.safe_load((ROOT / "params.yaml").read_text()))


def check_count(device: str, folder: Path) -> dict:
    import torch

    from emoneurons.neurons.counting import activation_counts

    lm_dev, lm_cpu = _loaded(device, folder), _loaded("cpu", folder)
    DIALOGUES, LABELS = _samples()
    out: dict = {"model_device": str(lm_dev.device)}
    ok = True
    for positions in ("all", "last"):
        for activation in ("gate", "product"):
            kwargs = dict(text="dialogue", positions=positions, activation=activation, batch_size=4, max_length=512, max_padding=1.0)
            f_dev, T_dev, _ = activation_counts(lm_dev, DIALOGUES, LABELS, **kwargs)
            f_cpu, T_cpu, _ = activation_counts(lm_cpu, DIALOGUES, LABELS, **kwargs)
            cells = int((f_dev != f_cpu).sum())
            # float32 on two devices rounds differently: a gate value within rounding of 0 may flip
            passed = torch.equal(T_dev, T_cpu) and cells <= max(1, f_cpu.numel() // 10_000)
            ok &= passed
            out[f"{positions}_{activation}"] = {"cells": f_cpu.numel(), "cells_differing": cells,
                                                "T_equal": torch.equal(T_dev, T_cpu), "pass": passed}
    out["pass"] = ok
    return out


def _neurons_json(lm) -> dict:
    """A neurons.json with a seeded random set per emotion and ratio (sadness in the top layers
    only, so its masks start above layer 0 and layer reuse runs): the check compares devices, it
    does not need neurons that select would pick."""
    import torch

    from emoneurons.emotions import EMOTIONS

    layers, per_layer = lm.model.config.num_hidden_layers, lm.model.config.intermediate_size
    generator = torch.Generator().manual_seed(0)
    ratios = {}
    for rate in (0.02, 0.04):
        chosen = {}
        for emotion in EMOTIONS:
            flat = torch.randperm(layers * per_layer, generator=generator)[: max(2, round(rate * layers * per_layer))]
            pairs = sorted({(int(i) // per_layer, int(i) % per_layer) for i in flat})
            if emotion == "sadness":
                pairs = sorted({(layers - 1 - layer % 2, index) for layer, index in pairs})
            chosen[emotion] = [list(pair) for pair in pairs]
        ratios[f"{rate:g}"] = {"selected": len({tuple(p) for v in chosen.values() for p in v}), "neurons": chosen}
    return {"top_rate": 0.02, "assign": "lape", "layers": layers, "neurons_per_layer": per_layer, "ratios": ratios}


def _split(per_emotion: int, offset: int = 0):
    import polars as pl

    from emoneurons.emotions import EMOTIONS

    DIALOGUES, LABELS = _samples()
    lines = dict(zip(LABELS, DIALOGUES))
    rows = [(f"{e}-{k + offset}", e, lines[e] + "\nB: Oh." * (1 + k % 3)) for e in EMOTIONS for k in range(per_emotion)]
    return pl.DataFrame({"id": [r[0] for r in rows], "label": [r[1] for r in rows], "theme": [r[1] for r in rows],
                         "dialogue": [r[2] for r in rows]})


def check_mask_eval(device: str, folder: Path) -> dict:
    from emoneurons.evaluate.masking_eval import evaluate_masking
    from emoneurons.io.neurons_file import parse_neurons
    from emoneurons.neurons.counting import activation_counts
    from emoneurons.neurons.selection import overall_activation_probability

    lm_dev, lm_cpu = _loaded(device, folder), _loaded("cpu", folder)
    neurons = _neurons_json(lm_cpu)
    # params' eval.controls (matched first) draw by P(active): the train split's, counted on the CPU
    train = _split(3)
    f, T, _ = activation_counts(lm_cpu, train["dialogue"].to_list(), train["label"].to_list(), positions="all",
                             activation="gate", batch_size=4, max_length=512, max_padding=1.0, text="dialogue")
    p_active = overall_activation_probability(f, T)
    params = _params().eval.model_copy(update={"ratios": (0.02,), "layer_ranges": ("top",), "control_draws": 1,
                                               "bootstrap": 100})
    runs = [evaluate_masking(lm, train, _split(2, offset=10), parse_neurons(neurons), params, 0.02, batch_size=4, progress=False,
                             workers=1, p_active=p_active, max_length=None, prompt_format="chat")[0] for lm in (lm_dev, lm_cpu)]
    by_id = [{c["id"]: c for c in run["conditions"]} for run in runs]
    masked = [c for c in by_id[1].values() if c.get("n_neurons")]
    differing = [i for i in by_id[1] if by_id[0].get(i, {}).get("confusion") != by_id[1][i]["confusion"]]
    return {"model_device": str(lm_dev.device), "method": params.method, "conditions": len(by_id[1]), "masked_conditions": len(masked),
            "conditions_differing": differing, "tokens_computed": runs[0]["tokens"]["computed"],
            "tokens_naive": runs[0]["tokens"]["naive"], "pass": not differing and len(by_id[0]) == len(by_id[1]) and bool(masked)}


def check_steer(device: str, folder: Path) -> dict:
    from emoneurons.evaluate.steering import plan_steering, run_steering
    from emoneurons.io.neurons_file import parse_neurons

    lm_dev, lm_cpu = _loaded(device, folder), _loaded("cpu", folder)
    neurons = _neurons_json(lm_cpu)
    settings = _params()
    steer = settings.steer.model_copy(update={"alphas": (0.0, 4.0), "control_draws": 1, "max_new_tokens": 6, "batch_size": 8})
    plan = plan_steering(parse_neurons(neurons), 0.02, steer)
    selected = {e: len(pairs) for e, pairs in neurons["ratios"]["0.02"]["neurons"].items()}
    prompts = ["How was your weekend?", "Tell me about the weather today.", "What did you have for lunch?"]
    records = [run_steering(lm, prompts, plan, _split(3), settings.eval, steer, selected, batch_size=4, prompt_format="chat") for lm in (lm_dev, lm_cpu)]

    def replies(record: dict) -> list:
        out = list(record["unmodified"]["replies"])
        for entry in record["emotions"].values():
            for condition in (*entry["steered"], *entry["controls"]):
                out += condition["replies"]
        return out

    dev, cpu = replies(records[0]), replies(records[1])
    same = sum(a == b for a, b in zip(dev, cpu))
    return {"model_device": str(lm_dev.device), "conditions": len(plan), "replies": len(cpu), "replies_identical": same,
            "pass": same == len(cpu) == len(dev) and bool(plan)}


# -- the run ----------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "gpu-check.json")
    parser.add_argument("--wheels", type=Path, default=ROOT / "gpu-wheels")
    parser.add_argument("--only", default="", help="comma-separated checks to run (default: all)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S)
    args = parser.parse_args(argv)
    if missing_modules():
        use_wheels(args.wheels)
        importlib.invalidate_caches()
    missing = missing_modules()
    if missing:
        print(f"make gpu-check: this Python ({sys.executable}, {platform.python_version()}) lacks {', '.join(missing)}; "
              f"run `make gpu-wheels` on a machine with the package index and bring gpu-wheels/ along", file=sys.stderr)
        return 2
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"make gpu-check: torch {torch.__version__} sees no CUDA GPU; run it on a GPU machine, "
              "or `make gpu-check DEVICE=cpu` to try the script on the CPU", file=sys.stderr)
        return 2
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench"), str(ROOT / "tests")]
    import transformers

    device = args.device
    record: dict = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "device": device,
        "card": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else platform.processor() or "cpu",
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "transformers": transformers.__version__, "checks": {},
    }
    folder = Path(tempfile.mkdtemp(prefix="gpu-check-model-"))
    checks = {
        "bench_8b": lambda: check_bench_8b(device), "attention_kernel": lambda: check_attention_kernel(device),
        "engine": lambda: check_engine(device), "count": lambda: check_count(device, folder),
        "mask_eval": lambda: check_mask_eval(device, folder), "steer": lambda: check_steer(device, folder),
    }
    chosen = [name for name in (args.only.split(",") if args.only else checks)]
    unknown = [name for name in chosen if name not in checks]
    if unknown:
        print(f"gpu_check.py --only: unknown check {unknown[0]!r}; allowed: {', '.join(checks)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    for name in chosen:
        if time.monotonic() - started > args.budget_s:
            record["checks"][name] = {"pass": None, "not_run": f"past the {args.budget_s:g} s budget"}
        else:
            began = time.monotonic()
            try:
                result = checks[name]()
            except Exception as error:  # recorded, and the next check still runs
                result = {"pass": False, "error": f"{type(error).__name__}: {error}".splitlines()[0],
                          "traceback": traceback.format_exc().splitlines()[-12:]}
            result["seconds"] = round(time.monotonic() - began, 2)
            record["checks"][name] = result
            gc.collect()
            if device.startswith("cuda"):
                record["checks"][name]["max_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
        entry = record["checks"][name]
        state = "not run" if entry["pass"] is None else "pass" if entry["pass"] else "FAIL"
        print(f"gpu-check {name}: {state}" + (f" ({entry['error']})" if "error" in entry else "") +
              (f" {entry['seconds']} s" if "seconds" in entry else ""), flush=True)
        record["all_passed"] = all(c["pass"] for c in record["checks"].values())
        record["seconds"] = round(time.monotonic() - started, 2)
        write_json(args.out, record)
    print(f"gpu-check: {'all passed' if record['all_passed'] else 'NOT all passed'}; every figure in {args.out}")
    return 0 if record["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
