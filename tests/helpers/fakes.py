"""Test doubles: a chat backend for fault injection, and in-process OpenAI-compatible servers on
127.0.0.1 that the real openai backend and the openai stages are run against."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence

from emoneurons.backends.chat import ChatRequest, Usage
from emoneurons.emotions import EMOTIONS


class FakeChat:
    """A ChatBackend answering with `reply(request)`; records every request it was asked."""

    name = "fake"
    model = "fake-model"

    def __init__(self, reply: Callable[[ChatRequest], str | None]) -> None:
        self.reply = reply
        self.requests: list[ChatRequest] = []
        self.usage = Usage()

    def complete(self, requests: Sequence[ChatRequest], desc: str = "") -> list[str | None]:
        self.requests += requests
        self.usage.requests += len(requests)
        return [self.reply(r) for r in requests]


HTTP_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


class FakeOpenAIServer:
    """POST /v1/chat/completions on 127.0.0.1, run on its own event loop in a thread.

    `script[content]` lists what the next requests whose last message is `content` get, one action
    each: "429:<seconds>", "500", "slow", "drop", "401", "404"; then (and otherwise) a normal answer
    "reply to <content> #<sample>". Counts every request and the most ever in flight."""

    def __init__(self, latency_s: float = 0.0, slow_s: float = 5.0) -> None:
        self.latency_s = latency_s
        self.slow_s = slow_s
        self.script: dict[str, list[str]] = {}
        self.requests = 0
        self.by_content: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.authorizations: set[str] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop).result()
        self.base_url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"
        return self

    def __exit__(self, *exc) -> None:
        async def shutdown() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one connection carries many requests
                request_line = await reader.readline()
                if not request_line:
                    return
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = json.loads(await reader.readexactly(int(headers.get("content-length", 0))))
                self.authorizations.add(headers.get("authorization", ""))
                self.requests += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    response = await self._respond(body)
                finally:
                    self.in_flight -= 1
                if response is None:  # dropped connection
                    return
                writer.write(response)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _respond(self, body: dict) -> bytes | None:
        content = body["messages"][-1]["content"]
        self.by_content[content] += 1
        queue = self.script.get(content) or []
        action = queue.pop(0) if queue else "ok"
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if action == "drop":
            return None
        if action == "slow":
            await asyncio.sleep(self.slow_s)
        if action.startswith("429"):
            return http_response(429, {"error": {"message": "Rate limit reached for requests", "type": "requests"}}, {"Retry-After": action.split(":")[1]})
        if action == "500":
            return http_response(500, {"error": {"message": "The server had an error", "type": "server_error"}})
        if action == "401":
            return http_response(401, {"error": {"message": "Incorrect API key provided: sk-te***st.", "code": "invalid_api_key"}})
        if action == "404":
            return http_response(404, {"error": {"message": f"The model `{body['model']}` does not exist", "code": "model_not_found"}})
        answer = f"reply to {content} t={body.get('temperature')}"
        return http_response(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(content), "completion_tokens": 3, "total_tokens": len(content) + 3},
            },
        )


def http_response(status: int, payload: dict, headers: dict[str, str] | None = None) -> bytes:
    data = json.dumps(payload).encode()
    lines = [f"HTTP/1.1 {status} {HTTP_REASONS[status]}", "Content-Type: application/json", f"Content-Length: {len(data)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


class PromptServer(FakeOpenAIServer):
    """Answers the paper's three prompts plausibly: a new topic, a dialogue, the dialogue's emotion.
    With `reject`, every request gets a 401 whose message echoes the key it was sent."""

    reject = False

    async def _respond(self, body: dict) -> bytes:
        content = body["messages"][-1]["content"]
        self.by_content[content] += 1
        if self.reject:
            sent = self.last_authorization.removeprefix("Bearer ")
            return http_response(401, {"error": {"message": f"Incorrect API key provided: {sent}.", "code": "invalid_api_key"}})
        if content.startswith("Please generate a one- or two-word alternative"):
            topic = re.search(r'term "([^"]+)"', content).group(1)
            answer = f"{topic} club"
        elif content.startswith("As a creative writer"):
            topic, emotion = re.search(r'topic "([^"]+)"\. The conversation should vividly convey the emotion of "(\w+)"', content).groups()
            answer = f"A: Let us talk about {topic}.\nB: It fills me with {emotion}, honestly."
        else:
            answer = next((e for e in EMOTIONS if f"with {e}," in content), "anger")
        return http_response(200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59},
        })

    async def _serve(self, reader, writer):  # remembers the Authorization header of the request it answers
        original = reader.readline

        async def readline():
            line = await original()
            if line.lower().startswith(b"authorization:"):
                self.last_authorization = line.decode().partition(":")[2].strip()
            return line

        reader.readline = readline
        return await super()._serve(reader, writer)
