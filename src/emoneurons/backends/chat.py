"""The chat-completion interface shared by the openai and hf backends (augment, generate, judges).

The backends import this module; the factory that picks one (backends/factory.py) sits above them."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

from tqdm.auto import tqdm

from emoneurons.backends.cache import ResponseCache, cache_key
from emoneurons.errors import EmoneuronsError

Role = Literal["system", "user", "assistant"]


class ChatBackendError(EmoneuronsError, RuntimeError):
    """A hard backend failure (bad key, bad request, unknown model): retrying cannot help.
    Its message is one line that carries the server's own message."""


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    sample: int = 0  # the k-th independent sample of the same prompt (part of the cache key)


@dataclass
class Usage:
    """Accumulated over a backend's lifetime; goes into the stage's metrics file.

    requests: asked for (cached ones included); cached: answered from the cache without a call;
    failed: no answer after all retries; retried: retry attempts made; truncated: answers cut off
    at the token limit (finish_reason "length", cached ones included), returned as None so that the
    caller re-asks or drops them: a reply that stops mid-sentence is never taken as whole. Tokens and cost cover every
    answer returned, cached ones included (their usage is stored with them), so the metrics
    describe the data set and do not change when a rerun is served from the cache; the calls paid
    for in this run are `fetched` = requests - cached - failed. cost_usd is None without prices.
    """

    requests: int = 0
    cached: int = 0
    failed: int = 0
    retried: int = 0
    truncated: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None

    @property
    def fetched(self) -> int:
        return self.requests - self.cached - self.failed

    def add_tokens(self, prompt_tokens: int, completion_tokens: int, cost_usd: float | None) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost_usd

    def as_metrics(self) -> dict:
        """A flat JSON-ready dict (the dataclass fields plus `fetched`)."""
        metrics = asdict(self)
        metrics["fetched"] = self.fetched
        if metrics["cost_usd"] is not None:
            metrics["cost_usd"] = round(metrics["cost_usd"], 6)
        return metrics


class ChatBackend(Protocol):
    name: str  # "openai" | "hf"
    model: str
    usage: Usage

    def complete(self, requests: Sequence[ChatRequest], desc: str = "") -> list[str | None]:
        """Answers in the order of `requests`; None = failed after retries, or cut off at the token
        limit (the caller re-asks or drops it)."""
        ...


CUT_OFF = "length"  # the OpenAI finish_reason of an answer stopped by max_tokens


def is_cut_off(finish_reason: str | None) -> bool:
    """True for an answer the server stopped at its token limit rather than at its own end."""
    return finish_reason == CUT_OFF


def token_cost(prompt_tokens: int, completion_tokens: int, price_in: float | None, price_out: float | None) -> float | None:
    """USD for one answer at per-1k-token prices; None when neither price is given."""
    if price_in is None and price_out is None:
        return None
    return prompt_tokens / 1000 * (price_in or 0.0) + completion_tokens / 1000 * (price_out or 0.0)


class ChatProgress:
    """A tqdm bar on stderr whose postfix shows cached / failed / retried of this call."""

    def __init__(self, total: int, desc: str, usage: Usage, enabled: bool = True) -> None:
        self._usage = usage
        self._start = (usage.cached, usage.failed, usage.retried)
        self._bar = tqdm(total=total, desc=desc or "chat", file=sys.stderr, unit="req", disable=not enabled, dynamic_ncols=True)

    def refresh(self, done: int = 0) -> None:
        """Advance by `done` finished requests and update the counters shown."""
        cached, failed, retried = (now - then for now, then in zip((self._usage.cached, self._usage.failed, self._usage.retried), self._start))
        self._bar.set_postfix_str(f"cached={cached} failed={failed} retried={retried}", refresh=False)
        if done:
            self._bar.update(done)

    def close(self) -> None:
        self.refresh()
        self._bar.refresh()
        self._bar.close()


def fill_from_cache(
    requests: Sequence[ChatRequest],
    results: list[str | None],
    cache: ResponseCache,
    fields_of: Callable[[ChatRequest], dict],
    usage: Usage,
    progress: ChatProgress,
    cost: Callable[[int, int], float | None] = lambda prompt, completion: None,
    cut_off: set[int] | None = None,
) -> array:
    """Put every cached answer into `results` (counted as cached, with its stored usage; a cut-off
    one stays None and its index goes into `cut_off`); return the indices still to fetch (8 bytes
    each, so huge runs stay small)."""
    misses = array("q")
    for index, request in enumerate(requests):
        hit = cache.get(cache_key(fields_of(request)))
        if hit is None:
            misses.append(index)
            continue
        usage.cached += 1
        if is_cut_off(hit.finish_reason):
            usage.truncated += 1  # kept None: cut off then, cut off now
            if cut_off is not None:
                cut_off.add(index)
        else:
            results[index] = hit.text
        usage.add_tokens(hit.prompt_tokens, hit.completion_tokens, cost(hit.prompt_tokens, hit.completion_tokens))
        progress.refresh(1)
    return misses
