"""bench/bench_gpu.py runs (on the CPU with --tiny) and prints the three throughputs and their
ratios to a plain forward; a smoke test, not a timing."""

from __future__ import annotations

import importlib.util
import re

from helpers.stage_runner import REPO

BENCH = REPO / "bench" / "bench_gpu.py"


def test_bench_gpu_tiny_prints_throughputs_and_ratios(capsys):
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tiny=True, layers=0, device="cpu", dtype="", dialogues=12, repeat_turns=1, batch_size=4, peak=0.0)
    out = capsys.readouterr().out
    for name in ("plain forward", "counting", "masked classification"):
        assert re.search(rf"{name}\s+[\d.]+ tokens/s", out), out
    assert len(re.findall(r"ratio to plain \d+\.\d{3}", out)) == 2, out
    assert "MFU n/a" in out and "n/a on the CPU" in out
    assert re.search(r"host syncs in one counting run: n/a on the CPU \(\d+ batches", out), out


def test_eight_b_shape_is_llama_31_8b():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from transformers import LlamaConfig

    config = LlamaConfig(**module.LLAMA_31_8B)
    # 8.03B parameters in Llama-3.1-8B (embeddings and lm_head untied), counted from the shape
    d, f, layers, vocab, kv = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size, 8 * 128
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * f + 2 * d
    assert round((layers * per_layer + 2 * vocab * d + d) / 1e9, 2) == 8.03
