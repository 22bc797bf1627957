"""Test doubles for fault injection (the real backends are tested against a real HTTP server)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from emoneurons.backends.chat import ChatRequest, Usage


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
