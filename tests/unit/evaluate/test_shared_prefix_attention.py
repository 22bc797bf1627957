"""The shared-prefix attention's kernels (evaluate/shared_prefix_attention.py): the plain math
kernel equals torch's CPU flash kernel (output and log-sum-exp), with GQA and a shared prefix; the
engine with the math kernel forced equals the model's plain forward; the CUDA kernel's call is
checked for shapes only (on meta tensors: this machine has no GPU)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from emoneurons.evaluate import shared_prefix_attention as spa
from emoneurons.evaluate.classify import MaskedClassifier
from emoneurons.evaluate.layer_runner import KVStore
from emoneurons.neurons import reference
from emoneurons.neurons.masking import mask_neurons
from emoneurons.text.chat_prompt import dialogue_ids, label_ids
from emoneurons.text.classification_prompt import classification_prompt

DIALOGUES = [
    "A: I can't believe this happened!\nB: Oh no, that is terrible.",
    "A: What a wonderful day.",
    "A: That smell is revolting.\nB: I'm scared of the dark.",
    "A: Oh no!",
]
SHOTS = [("A: What a wonderful day.", "happiness")]

pytestmark = pytest.mark.usefixtures("one_thread")


def _qkv(b=3, heads=6, kv_heads=2, t=5, p=7, d=8, seed=0):
    torch.manual_seed(seed)
    query = torch.randn(b, heads, t, d)
    key, value = torch.randn(b, kv_heads, t, d), torch.randn(b, kv_heads, t, d)
    prefix = (torch.randn(1, kv_heads, p, d), torch.randn(1, kv_heads, p, d))
    return query, key, value, prefix


@pytest.mark.parametrize("causal", [True, False])
def test_math_kernel_equals_cpu_flash_output_and_lse(causal):
    query, _, _, _ = _qkv()
    torch.manual_seed(1)
    s = query.shape[2] if causal else 11
    key, value = torch.randn(3, 6, s, 8), torch.randn(3, 6, s, 8)
    flash_out, flash_lse = spa.attention_with_lse(query, key, value, causal=causal, scale=0.3, kernel="cpu_flash")
    math_out, math_lse = spa.attention_with_lse(query, key, value, causal=causal, scale=0.3, kernel="math")
    assert math_out.shape == flash_out.shape == (3, 6, 5, 8) and math_lse.shape == flash_lse.shape == (3, 6, 5)
    torch.testing.assert_close(math_out, flash_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(math_lse, flash_lse, atol=1e-5, rtol=1e-5)
    if causal:  # the first query sees one key: its lse is that single score
        torch.testing.assert_close(math_lse[..., 0], (query[..., 0, :] * key[..., 0, :]).sum(-1) * 0.3, atol=1e-5, rtol=1e-5)


def test_shared_prefix_attention_same_with_math_and_cpu_flash_kernels():
    query, key, value, prefix = _qkv()  # 6 query heads over 2 key/value heads (GQA)
    outputs = {}
    for kernel in ("cpu_flash", "math"):
        with spa.forced_kernel(kernel):
            outputs[kernel] = [spa.shared_prefix_attention(SimpleNamespace(layer_idx=layer), query, key, value, None, scaling=0.3,
                                                           shared_prefix_cache=KVStore({}, shared_prefix={4: prefix}))[0] for layer in (4, 0)]
    for flash, plain in zip(outputs["cpu_flash"], outputs["math"]):
        torch.testing.assert_close(plain, flash, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(outputs["math"][0], outputs["math"][1], atol=1e-3)  # the prefix mattered


def test_kernel_follows_the_device_and_can_be_forced():
    assert spa.kernel_for(torch.device("cpu")) == "cpu_flash"
    assert spa.kernel_for(torch.device("cuda")) == "cuda_efficient"  # a device object: no GPU needed to ask
    assert spa.kernel_for(torch.device("meta")) == "math"
    with spa.forced_kernel("math"):
        assert spa.kernel_for(torch.device("cpu")) == "math"
    assert spa.kernel_for(torch.device("cpu")) == "cpu_flash"
    with pytest.raises(ValueError, match="allowed: cpu_flash, cuda_efficient, math"):
        with spa.forced_kernel("flash"):
            pass


def test_cuda_kernel_call_gives_the_shapes_the_merge_needs():
    # Shapes only, on meta tensors (torch's meta kernel for the CUDA op pads the lse to 32 queries).
    query, key, value = (torch.empty(2, 4, 5, 8, device="meta") for _ in range(3))
    out, lse = spa.attention_with_lse(query, key, value, causal=True, scale=0.3, kernel="cuda_efficient")
    assert out.shape == (2, 4, 5, 8) and lse.shape == (2, 4, 5) and lse.dtype == torch.float32
    prefix = (torch.empty(1, 2, 7, 8, device="meta"), torch.empty(1, 2, 7, 8, device="meta"))
    with spa.forced_kernel("cuda_efficient"):
        merged, _ = spa.shared_prefix_attention(SimpleNamespace(layer_idx=0), query, key[:, :2], value[:, :2], None,
                                                shared_prefix_cache=KVStore({}, shared_prefix={0: prefix}))
    assert merged.shape == (2, 5, 4, 8)


def test_cuda_kernel_refusing_an_input_falls_back_to_math_once(monkeypatch):
    monkeypatch.setattr(spa, "_efficient_failed", [])
    query, key, value, _ = _qkv(heads=2)
    # On CPU tensors the CUDA op refuses (no CPU kernel): warned once, then the math kernel.
    with pytest.warns(UserWarning, match="CUDA efficient kernel refused"):
        out, lse = spa.attention_with_lse(query, key, value, causal=True, scale=0.3, kernel="cuda_efficient")
    expected = spa.math_attention_with_lse(query, key, value, causal=True, scale=0.3)
    torch.testing.assert_close(out, expected[0])
    torch.testing.assert_close(lse, expected[1])
    assert spa.kernel_for(torch.device("cuda")) == "math"


def test_engine_with_math_kernel_equals_the_plain_forward(tiny_llama, monkeypatch):
    calls = []
    math = spa.math_attention_with_lse
    monkeypatch.setattr(spa, "math_attention_with_lse", lambda *a, **k: calls.append(1) or math(*a, **k))
    tok = tiny_llama.tokenizer
    prompt = classification_prompt(tok, SHOTS, prompt_format="chat")
    contexts = [prompt.ids(dialogue_ids(tok, d)) for d in DIALOGUES]
    top = {2: torch.tensor([1, 7, 30]), 3: torch.tensor([4, 11])}
    with spa.forced_kernel("math"):
        engine = MaskedClassifier(tiny_llama, prompt, DIALOGUES, "score", batch_size=3, boundaries=[2], max_new_tokens=8, label_format="bare", recalibrate=False)
        assert engine.shared_attention
        runs = [engine.classify(), engine.classify(top)]
    assert calls  # the math kernel ran
    expected = [reference.predict(tiny_llama.model, contexts, label_ids(tok, "bare"))[0]]
    with mask_neurons(tiny_llama.model, top):
        expected.append(reference.predict(tiny_llama.model, contexts, label_ids(tok, "bare"))[0])
    for run, scores in zip(runs, expected):
        torch.testing.assert_close(run.scores, scores, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(expected[0], expected[1], atol=1e-3)


def test_cuda_kernel_out_of_memory_is_raised_not_taken_for_a_refusal(monkeypatch):
    # torch.OutOfMemoryError is a RuntimeError: a batch too large must stop the run, not switch the
    # process to the math kernel (which needs more memory still) for good.
    monkeypatch.setattr(spa, "_efficient_failed", [])

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(spa, "_efficient", lambda: out_of_memory)
    query, key, value, _ = _qkv(heads=2)
    with pytest.raises(torch.OutOfMemoryError, match="out of memory"):
        spa.attention_with_lse(query, key, value, causal=True, scale=0.3, kernel="cuda_efficient")
    assert spa._efficient_failed == [] and spa.kernel_for(torch.device("cuda")) == "cuda_efficient"


@pytest.mark.parametrize("kernel", ["cpu_flash", "math"])
def test_bf16_merge_of_prefix_and_own_parts_is_done_in_float32_and_rounded_once(kernel):
    # One row, one query head per key/value head: the prefix call sees the query as it is, so the
    # two parts can be formed here by the same kernel calls.
    query, key, value, (prefix_key, prefix_value) = (t.to(torch.bfloat16) if isinstance(t, torch.Tensor) else t
                                                     for t in _qkv(b=1, heads=2, kv_heads=2, t=16, p=40, d=8, seed=3))
    prefix_key, prefix_value = prefix_key.to(torch.bfloat16), prefix_value.to(torch.bfloat16)
    with spa.forced_kernel(kernel):
        merged, _ = spa.shared_prefix_attention(SimpleNamespace(layer_idx=0), query, key, value, None, scaling=0.3,
                                                shared_prefix_cache=KVStore({}, shared_prefix={0: (prefix_key, prefix_value)}))
    out, lse = spa.attention_with_lse(query, key, value, causal=True, scale=0.3, kernel=kernel)
    out_p, lse_p = spa.attention_with_lse(query, prefix_key, prefix_value, causal=False, scale=0.3, kernel=kernel)
    total = torch.logaddexp(lse, lse_p)
    expected = (out.float() * torch.exp(lse - total)[..., None] + out_p.float() * torch.exp(lse_p - total)[..., None]).to(torch.bfloat16)
    assert merged.dtype == torch.bfloat16
    assert torch.equal(merged, expected.transpose(1, 2))
