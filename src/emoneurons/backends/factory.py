"""The backend factory: the chat backend a stage asks for (openai or hf), built from its params.

It sits above the backends it builds (backends/openai_backend.py, backends/hf_generate.py), which
share the interface in backends/chat.py; the heavy imports (openai, torch, transformers) stay
deferred so a stage pays only for the backend it uses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from emoneurons.backends.chat import ChatBackend
    from emoneurons.params import HFGenerationParams, ModelParams, OpenAIParams


def make_chat_backend(
    kind: Literal["openai", "hf"],
    *,
    openai: OpenAIParams | None = None,
    hf: HFGenerationParams | None = None,
    model: ModelParams | None = None,
    cache_dir: Path,
    seed: int | None = None,
    prompt_format: str | None = None,
) -> ChatBackend:
    """The backend of `kind`: openai needs `openai`; hf needs `hf`, `model` (loaded here) and
    `prompt_format` (eval.prompt_format: chat | plain | auto), resolved here for that model once.
    `seed` seeds hf sampling (request k samples with seed + k); openai sends no seed, since many
    compatible servers ignore or reject it, so its answers differ per `sample` index only."""
    if kind == "openai":
        if openai is None:
            raise ValueError("make_chat_backend('openai') needs openai=OpenAIParams")
        from emoneurons.backends.openai_backend import OpenAIChatBackend

        return OpenAIChatBackend(openai, Path(cache_dir))
    if kind == "hf":
        if hf is None or model is None or prompt_format is None or seed is None:
            raise ValueError("make_chat_backend('hf') needs hf=HFGenerationParams, model=ModelParams, prompt_format= and seed=")
        from emoneurons.backends.hf_generate import HFChatBackend
        from emoneurons.model.loading import load_model
        from emoneurons.text.prompt_format import resolve_prompt_format

        loaded = load_model(model)
        return HFChatBackend(loaded, hf, Path(cache_dir), seed=seed, batch_size=model.batch_size,
                             prompt_format=resolve_prompt_format(loaded.tokenizer, prompt_format))
    raise ValueError(f"unknown chat backend {kind!r}; allowed: openai, hf")
