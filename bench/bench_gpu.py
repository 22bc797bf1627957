"""GPU benchmark: a randomly initialised model of the Llama-3.1-8B-Instruct shape (no download),
plain decoder forward vs counting vs masked classification on the same dialogues.

    .venv/bin/python bench/bench_gpu.py                       # 8B shape, cuda, bfloat16
    .venv/bin/python bench/bench_gpu.py --layers 8            # the 8B layer shape, fewer layers (memory, time)
    .venv/bin/python bench/bench_gpu.py --tiny --device cpu   # the tests' tiny Llama (a smoke run)

One run prints, over the same length-bucketed batches of synthetic dialogues:
- plain: model.model (the decoder stack) forward, real tokens/s;
- counting: activation_counts (gate_proj > 0 summed per emotion on the device), real tokens/s
  and its ratio to plain (targets on an H100/H200-class card: >= 0.98 and >= 33,000 tokens/s),
  and on CUDA how many synchronizing calls one counting run makes (torch.cuda.set_sync_debug_mode);
- masked: MaskedClassifier.classify with a mask on every layer (it recomputes all layers) vs a
  plain forward of the same tokens (its shared prefix once, each dialogue batch after it):
  ratio target >= 0.95;
- MFU: model FLOPs (2 x non-embedding parameters per token + causal attention 2 x layers x
  hidden x n^2 per sequence of n tokens) / time / peak. The peak is --peak-tflops, or the
  dense bf16 peak of a known card (H100/H200: 989 TFLOP/s, A100: 312); on the CPU: n/a.
The numbers go in bench/RESULTS.md with the card, the date and the command.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402
import typer  # noqa: E402
from bench_count import prepared_batches, synthetic_dialogues  # noqa: E402

from emoneurons.evaluate.classify import MaskedClassifier  # noqa: E402
from emoneurons.model.loading import LoadedModel  # noqa: E402
from emoneurons.neurons.counting import activation_counts  # noqa: E402
from emoneurons.text.classification_prompt import classification_prompt  # noqa: E402

# Llama-3.1-8B-Instruct's config.json (the parts that set compute and memory).
LLAMA_31_8B = dict(
    hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
    vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0, tie_word_embeddings=False,
    rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192, "rope_type": "llama3"},
)
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0}  # dense bf16, vendor data sheets


def build_model(tiny: bool, layers: int | None, device: str, dtype: torch.dtype) -> LoadedModel:
    threads = torch.get_num_threads()
    from transformers import LlamaConfig, LlamaForCausalLM

    from helpers.tiny_models import (  # tests/helpers/: in-process tokenizer and tiny Llama
        build_tiny_llama,
        build_tokenizer,
    )

    torch.set_num_threads(threads)  # as the caller had it, whatever the imports set

    tokenizer = build_tokenizer()  # 600 ids: valid in the 8B vocabulary too
    if tiny:
        model = build_tiny_llama(len(tokenizer), layers=layers or 4).to(device=device, dtype=dtype)
        name = "tiny random Llama"
    else:
        config = LlamaConfig(**(LLAMA_31_8B | ({"num_hidden_layers": layers} if layers else {})))
        config._attn_implementation = "sdpa"
        before = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):  # initialised where it runs: no 32 GB host copy
                model = LlamaForCausalLM(config)
        finally:
            torch.set_default_dtype(before)
        name = f"random Llama-3.1-8B shape ({config.num_hidden_layers} layers)"
    model.eval().requires_grad_(False)
    model.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model=model, tokenizer=tokenizer, name=name)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def host_syncs(fn, device: torch.device) -> int | None:
    """How many calls that make the host wait for the GPU fn makes (torch's CUDA sync debug
    mode); None on the CPU, where there is nothing to wait for."""
    if device.type != "cuda":
        return None
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


def flops(lm: LoadedModel, lengths: list[int]) -> float:
    """Forward FLOPs of the decoder stack over sequences of these lengths."""
    config = lm.model.config
    embedding = lm.model.model.get_input_embeddings().weight.numel()
    params = sum(p.numel() for p in lm.model.model.parameters()) - embedding
    return sum(2.0 * params * n + 2.0 * config.num_hidden_layers * config.hidden_size * n * n for n in lengths)


def peak_tflops(device: torch.device, given: float | None) -> tuple[float | None, str]:
    if given:
        return given, f"{given:g} TFLOP/s (--peak-tflops)"
    if device.type == "cuda":
        card = torch.cuda.get_device_name(device)
        for key, value in PEAK_TFLOPS.items():
            if key in card:
                return value, f"{value:g} TFLOP/s ({card}, dense bf16)"
        return None, f"unknown for {card}: pass --peak-tflops"
    return None, "n/a on the CPU (pass --peak-tflops to state one)"


def measure(*, tiny: bool, layers: int | None, device: str, dtype: str, dialogues: int, repeat_turns: int, batch_size: int,
            peak: float | None) -> dict:
    """Every figure of one run (what main prints; bench/gpu_check.py writes them into its JSON)."""
    where = torch.device(device)
    dtype = dtype or ("bfloat16" if where.type == "cuda" else "float32")
    lm = build_model(tiny, layers, device, getattr(torch, dtype))
    texts, emotions = synthetic_dialogues(dialogues)
    texts = ["\n".join([text] * repeat_turns) for text in texts]
    card = torch.cuda.get_device_name(where) if where.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"

    batches = prepared_batches(lm, texts, emotions, batch_size, "dialogue")
    lengths = [int(n) for b in batches for n in b.attention_mask.sum(1).tolist()]
    real, processed = sum(lengths), sum(b.attention_mask.numel() for b in batches)

    @torch.inference_mode()
    def plain() -> None:
        for b in batches:
            lm.model.model(input_ids=b.input_ids.to(where), attention_mask=b.attention_mask.to(where),
                           position_ids=b.position_ids.to(where), use_cache=False)

    def count() -> None:
        activation_counts(lm, texts, emotions, batch_size=batch_size, max_length=1 << 16, desc="bench", text="dialogue", positions="all", activation="gate")

    plain()  # warm-up (kernels, allocator)
    plain_s, count_s = timed(plain, where), timed(count, where)
    syncs = host_syncs(count, where)  # the aim: no host sync per batch (one more counting run)
    prompt = classification_prompt(lm.tokenizer, prompt_format="chat")
    engine = MaskedClassifier(lm, prompt, texts, "score", batch_size=batch_size, max_new_tokens=1, boundaries=[0], label_format="bare", recalibrate=False)
    n_layers = lm.model.config.num_hidden_layers
    # A few neurons in every layer: the masked run recomputes every layer from the embeddings.
    mask = {layer: torch.tensor([0, 1, 2], device=where) for layer in range(n_layers)}
    engine.classify()  # the unmodified run the masked ones start from (and a warm-up)
    result = None

    def masked() -> None:
        nonlocal result
        result = engine.classify(mask)

    masked_s = timed(masked, where)

    @torch.inference_mode()
    def plain_same_tokens() -> None:
        lm.model.model(engine.prefix_ids.to(where))
        for b in engine.batches:
            lm.model.model(b.ids.to(where))

    plain_masked_s = timed(plain_same_tokens, where)
    peak_value, peak_text = peak_tflops(where, peak or None)
    model_flops = flops(lm, lengths)

    def mfu(seconds: float) -> float | None:
        return 100 * model_flops / seconds / (peak_value * 1e12) if peak_value else None

    return {
        "model": lm.name, "dtype": dtype, "card": card, "torch": torch.__version__, "dialogues": len(texts),
        "real_tokens": real, "batches": len(batches), "batch_size": batch_size, "processed_tokens": processed,
        "padding_share": (processed - real) / processed, "peak": peak_text, "peak_tflops": peak_value,
        "plain_tokens_per_s": real / plain_s, "plain_mfu_percent": mfu(plain_s),
        "count_tokens_per_s": real / count_s, "count_mfu_percent": mfu(count_s), "count_ratio_to_plain": plain_s / count_s,
        "count_host_syncs": syncs,
        "masked_tokens": result.tokens_computed, "masked_tokens_per_s": result.tokens_computed / masked_s,
        "plain_same_tokens_per_s": result.tokens_computed / plain_masked_s, "masked_ratio_to_plain": plain_masked_s / masked_s,
    }


def report(figures: dict) -> None:
    def mfu(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}%"

    f = figures
    print(f"{f['model']}, {f['dtype']}, {f['card']}; torch {f['torch']}")
    print(f"{f['dialogues']} dialogues, {f['real_tokens']} real tokens in {f['batches']} batches of <= {f['batch_size']}; "
          f"padding {100 * f['padding_share']:.1f}% of {f['processed_tokens']} processed; peak {f['peak']}")
    print(f"  plain forward        {f['plain_tokens_per_s']:10.1f} tokens/s   MFU {mfu(f['plain_mfu_percent'])}")
    print(f"  counting             {f['count_tokens_per_s']:10.1f} tokens/s   MFU {mfu(f['count_mfu_percent'])}   "
          f"ratio to plain {f['count_ratio_to_plain']:.3f}")
    syncs = f["count_host_syncs"]
    print(f"  host syncs in one counting run: {'n/a on the CPU' if syncs is None else syncs} "
          f"({f['batches']} batches; the final read of the counts is one)")
    print(f"  masked classification {f['masked_tokens_per_s']:9.1f} tokens/s over {f['masked_tokens']} tokens; "
          f"plain over the same tokens {f['plain_same_tokens_per_s']:.1f} tokens/s; "
          f"ratio to plain {f['masked_ratio_to_plain']:.3f}")


def main(
    tiny: bool = typer.Option(False, help="the tests' tiny Llama instead of the 8B shape"),
    layers: int = typer.Option(0, help="decoder layers (0: the shape's own, 32 for 8B)"),
    device: str = typer.Option("cuda" if torch.cuda.is_available() else "cpu"),
    dtype: str = typer.Option("", help="bfloat16 | float32 (default: bfloat16 on cuda, float32 on cpu)"),
    dialogues: int = typer.Option(256, help="synthetic dialogues"),
    repeat_turns: int = typer.Option(8, help="each synthetic dialogue repeated this many times (longer dialogues)"),
    batch_size: int = typer.Option(16, help="sequences per batch (params: model.batch_size)"),
    peak: float = typer.Option(0.0, "--peak-tflops", help="the card's peak TFLOP/s for MFU (0: known cards only)"),
) -> None:
    report(measure(tiny=tiny, layers=layers or None, device=device, dtype=dtype, dialogues=dialogues,
                   repeat_turns=repeat_turns, batch_size=batch_size, peak=peak or None))


if __name__ == "__main__":
    typer.run(main)
