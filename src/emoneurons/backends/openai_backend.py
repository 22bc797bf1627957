"""Chat completions from any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp server):
async with a concurrency cap and an optional requests-per-minute limit, tenacity retries with
backoff and jitter (the only retry layer: the client itself never retries), and the response cache."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import re
import time
from array import array
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from emoneurons.backends.cache import ResponseCache, cache_key, request_fields
from emoneurons.backends.chat import (
    ChatBackendError,
    ChatProgress,
    ChatRequest,
    Usage,
    fill_from_cache,
    is_cut_off,
    token_cost,
)
from emoneurons.params import OpenAIParams

RETRY_AFTER_CAP_S = 300.0  # a server asking for longer (e.g. a daily quota) will not recover within a run
_TRANSIENT_STATUS = {408, 409, 429}
_T = TypeVar("_T")


class _RetriesExhausted(Exception):
    """A transient error outlasted every retry."""


def is_loopback(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_api_key(params: OpenAIParams) -> str:
    """The key from the environment variable `api_key_env`; a loopback server may go without one."""
    key = os.environ.get(params.api_key_env, "")
    if key:
        return key
    if is_loopback(params.base_url):
        return "no-key"  # local servers (vLLM, Ollama, llama.cpp) accept any key
    raise ChatBackendError(
        f"openai: environment variable {params.api_key_env} is not set; export the API key for "
        f"{params.base_url} in it (api_key_env names the variable; the key never goes in params.yaml)"
    )


def is_transient(error: BaseException) -> bool:
    """Worth retrying: rate limits, server errors, timeouts, dropped connections."""
    if isinstance(error, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code in _TRANSIENT_STATUS or error.status_code >= 500
    return False


def retry_after_seconds(error: BaseException | None) -> float | None:
    """The wait a server asked for (retry-after-ms, or Retry-After in seconds or as an HTTP date)."""
    response = getattr(error, "response", None)
    if response is None:
        return None
    headers = response.headers
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def server_message(error: openai.OpenAIError) -> str:
    """The server's own explanation, on one line."""
    body = getattr(error, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
    elif isinstance(body, str) and body:
        message = body
    else:
        message = str(getattr(error, "message", None) or error) or type(error).__name__
    return " ".join(message.split())[:500]


def describe_error(error: BaseException) -> str:
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}: {server_message(error)}"
    if isinstance(error, openai.OpenAIError):
        return f"{type(error).__name__}: {server_message(error)}"
    return f"{type(error).__name__}: {error}"


def describe_body(text: str) -> str:
    """A response body in a few words: empty, an HTML page (with its title) or its first characters."""
    stripped = " ".join(text.split())
    if not stripped:
        return "an empty body"
    if stripped.startswith("<"):
        title = re.search(r"<title>(.*?)</title>", stripped, re.IGNORECASE | re.DOTALL)
        return f"an HTML page ({title.group(1).strip()[:80]!r})" if title else f"an HTML page ({stripped[:80]!r})"
    return f"a body that is not a chat completion ({stripped[:80]!r})"


class RequestRateLimiter:
    """Spaces request starts evenly at `per_minute` per minute (no bursts)."""

    def __init__(self, per_minute: int) -> None:
        self._interval = 60.0 / per_minute
        self._next_start = 0.0

    async def wait(self) -> None:
        now = asyncio.get_running_loop().time()
        start = max(now, self._next_start)
        self._next_start = start + self._interval  # claimed before awaiting: the loop is single-threaded
        if start > now:
            await asyncio.sleep(start - now)


def run_coroutine(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run to completion from sync code, also when the caller already runs an event loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class OpenAIChatBackend:
    name = "openai"

    def __init__(
        self,
        params: OpenAIParams,
        cache_dir: str | Path,
        *,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        progress: bool = True,
    ) -> None:
        self.params = params
        self.model = params.model
        self.usage = Usage()
        self.cache = ResponseCache(cache_dir)
        self.last_error: str | None = None  # of the latest failed attempt, for the stage's log
        self.last_cut_off: set[int] = set()  # indices of the latest complete() cut off at max_tokens
        self._api_key = resolve_api_key(params)  # fails here, before any request
        self._base_url = params.base_url.rstrip("/")
        self._sampling = {"temperature": params.temperature, "max_tokens": params.max_tokens}
        self._backoff = wait_exponential_jitter(multiplier=backoff_initial_s, max=backoff_max_s, jitter=backoff_initial_s)
        self._progress = progress

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIChatBackend(base_url={self._base_url!r}, model={self.model!r})"

    def request_fields(self, request: ChatRequest) -> dict[str, Any]:
        return request_fields(
            backend=self.name,
            model=self.model,
            base_url=self._base_url,
            messages=request.messages,
            sampling=self._sampling,
            sample=request.sample,
        )

    def complete(self, requests: Sequence[ChatRequest], desc: str = "") -> list[str | None]:
        results: list[str | None] = [None] * len(requests)
        self.usage.requests += len(requests)
        self.last_cut_off = set()
        progress = ChatProgress(len(requests), desc, self.usage, enabled=self._progress)
        try:
            misses = fill_from_cache(
                requests, results, self.cache, self.request_fields, self.usage, progress, self._cost, self.last_cut_off
            )
            if misses:
                run_coroutine(self._fetch_all(requests, misses, results, progress))
        finally:
            progress.close()
        return results

    async def _fetch_all(self, requests: Sequence[ChatRequest], misses: array, results: list[str | None], progress: ChatProgress) -> None:
        client = openai.AsyncOpenAI(
            api_key=self._api_key, base_url=self.params.base_url, timeout=self.params.timeout_s, max_retries=0
        )
        limiter = RequestRateLimiter(self.params.requests_per_minute) if self.params.requests_per_minute else None
        pending: Iterator[int] = iter(misses)
        unanswered = 0

        # A fixed pool of workers rather than one task per request keeps memory flat on huge runs.
        async def worker() -> None:
            nonlocal unanswered
            for index in pending:
                if unanswered:  # the server is gone or overloaded: start nothing new, let the others finish
                    return
                try:
                    results[index] = await self._fetch_one(client, limiter, requests[index], progress, index)
                except _RetriesExhausted:
                    unanswered += 1
                progress.refresh(1)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.params.concurrency, len(misses))):
                    group.create_task(worker())
        except BaseExceptionGroup as errors:
            hard = [e for e in errors.exceptions if isinstance(e, ChatBackendError)]
            if hard:
                raise hard[0] from None
            raise errors.exceptions[0] from None  # the task's own error, not the group wrapping it
        finally:
            await client.close()
        if unanswered:
            # Failing the stage (rather than dropping the requests) is what makes a rerun resume:
            # every answer received is cached, and nothing half-done is written as the stage's output.
            raise ChatBackendError(
                f"openai: {self._base_url} (model {self.model!r}) gave no answer after "
                f"{self.params.max_retries} retries (last error: {self.last_error}); the answers received "
                f"are cached in {self.cache.root}: run the stage again to resume"
            )

    async def _fetch_one(
        self, client: openai.AsyncOpenAI, limiter: RequestRateLimiter | None, request: ChatRequest, progress: ChatProgress,
        index: int = -1,
    ) -> str | None:
        fields = self.request_fields(request)

        def count_retry(state: RetryCallState) -> None:
            self.usage.retried += 1
            self.last_error = self._redact(describe_error(state.outcome.exception()))
            progress.refresh()

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.params.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(is_transient),
            before_sleep=count_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if limiter is not None:
                        await limiter.wait()
                    raw = await client.chat.completions.with_raw_response.create(
                        model=self.model,
                        messages=[{"role": role, "content": content} for role, content in request.messages],
                        **self._sampling,
                    )
                    response = self._completion(raw)
        except openai.OpenAIError as error:
            if not is_transient(error):
                raise ChatBackendError(
                    f"openai: {self._base_url} (model {self.model!r}) refused the request: {self._redact(describe_error(error))}"
                    + (f" (check the key in ${self.params.api_key_env})" if getattr(error, "status_code", None) in (401, 403) else "")
                ) from None
            self.last_error = self._redact(describe_error(error))
            self.usage.failed += 1
            raise _RetriesExhausted from None

        text = response.choices[0].message.content if response.choices else None
        if text is None:  # e.g. a content filter: nothing to keep, the caller drops it
            self.last_error = "empty answer (no choices or no content)"
            self.usage.failed += 1
            return None
        finish_reason = response.choices[0].finish_reason
        prompt_tokens = (response.usage.prompt_tokens or 0) if response.usage else 0
        completion_tokens = (response.usage.completion_tokens or 0) if response.usage else 0
        self.cache.put(cache_key(fields), fields, text, prompt_tokens, completion_tokens, finish_reason)
        self.usage.add_tokens(prompt_tokens, completion_tokens, self._cost(prompt_tokens, completion_tokens))
        if is_cut_off(finish_reason):
            self.usage.truncated += 1
            self.last_cut_off.add(index)
            return None
        return text

    def _redact(self, message: str) -> str:
        """A server's message with the key masked: some echo the key they were sent."""
        if len(self._api_key) >= 8:
            message = message.replace(self._api_key, "***")
        return message

    def _completion(self, raw: Any) -> Any:
        """The parsed chat completion; ChatBackendError (not retried: a wrong base_url or a proxy's
        page does not fix itself) when the body is empty, HTML or JSON that is not a completion."""
        try:
            response = raw.parse()
        except ValueError:  # JSONDecodeError and the like: not JSON at all
            response = None
        if not isinstance(getattr(response, "choices", None), list):
            raise ChatBackendError(
                f"openai: {self._base_url} (model {self.model!r}) answered HTTP {raw.http_response.status_code} with "
                f"{describe_body(self._redact(raw.http_response.text))} instead of a chat completion; check openai.base_url "
                "(an OpenAI-compatible endpoint, usually ending in /v1)"
            )
        return response

    def _wait(self, state: RetryCallState) -> float:
        """Retry-After when the server gives one (plus up to 10% jitter), else exponential backoff with jitter."""
        asked = retry_after_seconds(state.outcome.exception() if state.outcome else None)
        if asked is not None:
            asked = min(asked, RETRY_AFTER_CAP_S)
            return asked + random.uniform(0, 0.1 * asked)
        return self._backoff(state)

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return token_cost(prompt_tokens, completion_tokens, self.params.price_per_1k_input, self.params.price_per_1k_output)
