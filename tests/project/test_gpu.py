"""Numeric tests of the CUDA paths against the CPU (issue 23): the engine (shared-prefix attention
with the CUDA kernel, layer reuse), counting, the kept boundary states and loading straight onto the
card. They need a CUDA GPU and are skipped without one (the reason says so); on a lent card run
`pytest -m gpu` (or `make gpu-check` for the figures)."""

from __future__ import annotations

import copy

import pytest
import torch

from emoneurons.evaluate.classify import MaskedClassifier
from emoneurons.model.loading import LoadedModel
from emoneurons.neurons.counting import activation_counts
from emoneurons.text.classification_prompt import classification_prompt
from helpers.tiny_models import SIX_EMOTION_DIALOGUES as DIALOGUES
from helpers.tiny_models import SIX_EMOTION_LABELS as LABELS

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")]

MASK = {2: torch.tensor([1, 7, 30]), 3: torch.tensor([4, 11])}


def on(lm: LoadedModel, device: str, dtype: torch.dtype = torch.float32) -> LoadedModel:
    return LoadedModel(model=copy.deepcopy(lm.model).to(device=device, dtype=dtype), tokenizer=lm.tokenizer, name=lm.name)


def scores(lm: LoadedModel, method: str = "score"):
    prompt = classification_prompt(lm.tokenizer, [(DIALOGUES[1], "happiness")], prompt_format="chat")
    engine = MaskedClassifier(lm, prompt, DIALOGUES, method, batch_size=4, boundaries=[2], max_new_tokens=4, label_format="bare", recalibrate=False)
    return engine, engine.classify(), engine.classify(MASK)


def test_engine_on_cuda_equals_the_cpu_in_float32(tiny_llama):
    engine, plain, masked = scores(on(tiny_llama, "cuda"))
    _, plain_cpu, masked_cpu = scores(tiny_llama)
    assert engine.engine == "layered" and engine.shared_attention
    for got, expected in ((plain, plain_cpu), (masked, masked_cpu)):
        torch.testing.assert_close(got.scores, expected.scores, atol=1e-4, rtol=0)
        assert got.predicted == expected.predicted
    assert masked.tokens_computed < plain.tokens_computed  # layer reuse ran on the card


def test_engine_generate_on_cuda_gives_the_cpu_answers(tiny_llama):
    _, plain, masked = scores(on(tiny_llama, "cuda"), "generate")
    _, plain_cpu, masked_cpu = scores(tiny_llama, "generate")
    assert plain.answers == plain_cpu.answers and masked.answers == masked_cpu.answers


def test_engine_in_bfloat16_on_cuda_predicts_as_the_cpu_in_bfloat16(tiny_llama):
    _, plain, masked = scores(on(tiny_llama, "cuda", torch.bfloat16))
    _, plain_cpu, masked_cpu = scores(on(tiny_llama, "cpu", torch.bfloat16))
    assert plain.predicted == plain_cpu.predicted and masked.predicted == masked_cpu.predicted


def test_the_cuda_kernel_is_used_and_matches_sdpa():
    import torch.nn.functional as F

    from emoneurons.evaluate import shared_prefix_attention as spa

    assert spa.kernel_for(torch.device("cuda")) == "cuda_efficient"
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 8, 40, 128, generator=generator).cuda() for _ in range(3))
    out, lse = spa.attention_with_lse(q, k, v, causal=True, scale=128**-0.5)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-4, rtol=0)
    _, lse_math = spa.math_attention_with_lse(q, k, v, causal=True, scale=128**-0.5)
    torch.testing.assert_close(lse, lse_math, atol=1e-4, rtol=0)


@pytest.mark.parametrize("positions", ["all", "last"])
@pytest.mark.parametrize("activation", ["gate", "product"])
def test_counts_on_cuda_equal_the_cpu(tiny_llama, positions, activation):
    kwargs = dict(text="dialogue", positions=positions, activation=activation, batch_size=3, max_length=512, max_padding=1.0)
    f, T, _ = activation_counts(on(tiny_llama, "cuda"), DIALOGUES, LABELS, **kwargs)
    f_cpu, T_cpu, _ = activation_counts(tiny_llama, DIALOGUES, LABELS, **kwargs)
    assert f.device.type == "cpu" and torch.equal(T, T_cpu)
    assert int((f != f_cpu).sum()) <= 1  # float32 on two devices: a gate within rounding of 0 may flip


def test_boundary_states_are_kept_in_pinned_host_memory(tiny_llama):
    engine, _, _ = scores(on(tiny_llama, "cuda"))
    for batch in engine.batches:
        assert batch.boundary.device_bytes() == 0
        assert all(device.type == "cpu" for device in batch.boundary.stored_devices().values())
        assert batch.boundary._stored[2][0].is_pinned() and batch.boundary[2].device.type == "cuda"


def test_loading_with_model_device_cuda_lands_on_the_card(tmp_path, tiny_llama):
    from emoneurons.model.loading import load_model
    from helpers.repo_params import section

    tiny_llama.model.save_pretrained(tmp_path / "m")
    tiny_llama.tokenizer.save_pretrained(tmp_path / "m")
    loaded = load_model(section("model", id=str(tmp_path / "m"), device="cuda", dtype="float32"))
    assert {p.device.type for p in loaded.model.parameters()} == {"cuda"}
