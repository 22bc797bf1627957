"""Chat completions from a local transformers causal LM: chat template, left-padded batches, and
sampling seeded per request (seed + sample index), so an answer does not depend on which other
requests shared its batch, or on which were already cached."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, PreTrainedTokenizerBase

from emoneurons.backends.cache import ResponseCache, cache_key, request_fields
from emoneurons.backends.chat import CUT_OFF, ChatProgress, ChatRequest, Usage, fill_from_cache, is_cut_off
from emoneurons.model.loading import LoadedModel
from emoneurons.model.special_tokens import eos_token_ids, pad_token_id
from emoneurons.params import HFGenerationParams
from emoneurons.text.prompt_format import ResolvedPromptFormat, prompt_text, resolved

_SORT_WINDOW = 8  # batches' worth of requests sorted by length together, to cut padding


def sampling_fields(params: HFGenerationParams, seed: int, dtype: torch.dtype, prompt_format: ResolvedPromptFormat) -> dict[str, Any]:
    """What decides an answer besides model and messages (cache key). Greedy ignores top_p and seed,
    so those are left out of a greedy key and changing them reuses greedy answers. The resolved
    prompt format enters the key only when plain, so chat-template answers keep their old keys."""
    fields: dict[str, Any] = {"temperature": params.temperature, "max_new_tokens": params.max_new_tokens, "dtype": str(dtype).removeprefix("torch.")}
    if params.temperature > 0:
        fields.update(top_p=params.top_p, seed=seed)
    if prompt_format == "plain":
        fields["prompt_format"] = "plain"
    return fields


class SeededSampler(LogitsProcessor):
    """Temperature + top-p sampling with one torch.Generator per row; it returns scores that are
    -inf except at the drawn token, so greedy decoding then emits exactly the draw."""

    def __init__(self, temperature: float, top_p: float, seeds: Sequence[int]) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.seeds = list(seeds)
        self._generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._generators is None:  # created on the logits' device, which is known only now
            self._generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        probs = top_p_filter(torch.softmax(scores.float() / self.temperature, dim=-1), self.top_p)
        drawn = torch.cat([torch.multinomial(probs[row], 1, generator=g) for row, g in enumerate(self._generators)])
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(1, drawn.unsqueeze(1), 0.0)


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches top_p (at least one), renormalised."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


@contextmanager
def left_padding(tokenizer: PreTrainedTokenizerBase) -> Iterator[PreTrainedTokenizerBase]:
    previous = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = previous


def answer_length(tokens: list[int], eos_ids: set[int]) -> int:
    """Generated tokens up to and including the first end-of-turn token (the rest is padding)."""
    for position, token in enumerate(tokens):
        if token in eos_ids:
            return position + 1
    return len(tokens)


class HFChatBackend:
    name = "hf"

    def __init__(
        self,
        loaded: LoadedModel,
        params: HFGenerationParams,
        cache_dir: str | Path,
        *,
        seed: int,
        batch_size: int,
        prompt_format: ResolvedPromptFormat,
        progress: bool = True,
    ) -> None:
        """`prompt_format`: chat | plain, eval.prompt_format resolved where `loaded` was loaded
        (backends/factory.py, text/prompt_format.py)."""
        self.loaded = loaded
        self.prompt_format = resolved(prompt_format)
        self.params = params
        self.model = loaded.name
        self.usage = Usage()
        self.cache = ResponseCache(cache_dir)
        self.seed = seed
        self.batch_size = batch_size
        self._sampling = sampling_fields(params, seed, loaded.model.dtype, self.prompt_format)
        self._eos_ids = eos_token_ids(loaded)
        self._progress = progress
        self.last_cut_off: set[int] = set()  # indices of the latest complete() cut off at max_new_tokens

    def request_fields(self, request: ChatRequest) -> dict[str, Any]:
        return request_fields(
            backend=self.name, model=self.model, base_url=None, messages=request.messages, sampling=self._sampling, sample=request.sample
        )

    def complete(self, requests: Sequence[ChatRequest], desc: str = "") -> list[str | None]:
        results: list[str | None] = [None] * len(requests)
        self.usage.requests += len(requests)
        self.last_cut_off = set()
        progress = ChatProgress(len(requests), desc, self.usage, enabled=self._progress)
        try:
            misses = fill_from_cache(
                requests, results, self.cache, self.request_fields, self.usage, progress, cut_off=self.last_cut_off
            )
            window = self.batch_size * _SORT_WINDOW
            for start in range(0, len(misses), window):
                prompts = {i: prompt_text(self.loaded.tokenizer, requests[i].messages, self.prompt_format) for i in misses[start : start + window]}
                by_length = sorted(prompts, key=lambda i: len(prompts[i]))
                for first in range(0, len(by_length), self.batch_size):
                    batch = by_length[first : first + self.batch_size]
                    answers = self.generate([prompts[i] for i in batch], [self.seed + requests[i].sample for i in batch])
                    for index, (text, prompt_tokens, completion_tokens, finish_reason) in zip(batch, answers):
                        fields = self.request_fields(requests[index])
                        self.cache.put(cache_key(fields), fields, text, prompt_tokens, completion_tokens, finish_reason)
                        self.usage.add_tokens(prompt_tokens, completion_tokens, None)
                        if is_cut_off(finish_reason):
                            self.usage.truncated += 1
                            self.last_cut_off.add(index)
                        else:
                            results[index] = text
                    progress.refresh(len(batch))
        finally:
            progress.close()
        return results

    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[tuple[str, int, int, str]]:
        """(answer, prompt tokens, answer tokens, finish reason) per rendered prompt, in one left-padded batch."""
        return generate_batch(self.loaded, self.params, prompts, seeds, self._eos_ids, self.prompt_format)


@torch.inference_mode()
def generate_batch(
    loaded: LoadedModel, params: HFGenerationParams, prompts: Sequence[str], seeds: Sequence[int], eos_ids: Sequence[int],
    prompt_format: ResolvedPromptFormat,
) -> list[tuple[str, int, int, str]]:
    """(answer, prompt tokens, answer tokens, finish reason) per rendered prompt, in one left-padded
    batch; greedy when params.temperature is 0, else sampled with one seed per row. The finish
    reason is "stop" at an end-of-turn token, "length" when max_new_tokens ran out first (the
    answer is cut off). Hooks on the model apply."""
    tokenizer = loaded.tokenizer
    with left_padding(tokenizer):
        # A chat template writes its own BOS; plain text needs the tokenizer's.
        inputs = tokenizer(
            list(prompts), return_tensors="pt", padding=True, add_special_tokens=prompt_format == "plain"
        ).to(loaded.device)
    config = GenerationConfig(
        max_new_tokens=params.max_new_tokens,
        do_sample=False,  # sampling, when asked for, is SeededSampler's job
        num_beams=1,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        pad_token_id=pad_token_id(tokenizer),
        eos_token_id=list(eos_ids),
    )
    processors = LogitsProcessorList()
    if params.temperature > 0:
        processors.append(SeededSampler(params.temperature, params.top_p, seeds))
    output = loaded.model.generate(**inputs, generation_config=config, logits_processor=processors)
    prompt_width = inputs["input_ids"].shape[1]
    eos = set(eos_ids)
    answers = []
    for row, generated in enumerate(output[:, prompt_width:].tolist()):
        length = answer_length(generated, eos)
        text = tokenizer.decode(generated[:length], skip_special_tokens=True).strip()
        ended = length > 0 and generated[length - 1] in eos
        answers.append((text, int(inputs["attention_mask"][row].sum()), length, "stop" if ended else CUT_OFF))
    return answers
