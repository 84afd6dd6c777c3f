"""An OpenAI-compatible server on 127.0.0.1 for the real `openai` client: embeddings and chat.

Embeddings are hashed bags of words (deterministic, and texts sharing words point the same
way), so similarity search over them is meaningful. Failures are scripted per request: the
next N requests answer a given status (429 with Retry-After, 500 bursts). Chat replies can be
scripted in order (`script_chat`: JSON text, or a `Refusal`), else every chat completion answers
`vision_reply`. Every request is recorded, so tests count exactly what reached the provider.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import serve_local

DIMENSIONS = 1536
_WORD = re.compile(r"[a-z0-9]+")


def embed(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """A unit vector with one hashed dimension per distinct word, weighted by its count."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest, "big") % dimensions] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


@dataclass
class Failure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    """A scripted chat reply in which the model refuses (content null, refusal set)."""

    reason: str = "I can't help with that."


@dataclass
class FakeOpenAI:
    base_url: str = ""
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(path, JSON body) of every request, failed ones included."""
    vision_reply: str = "{}"
    """The content of every chat completion's message, once the scripted replies are used up."""
    _failures: deque[Failure] = field(default_factory=deque)
    _chat_script: deque[str | Refusal] = field(default_factory=deque)

    def script_chat(self, *replies: str | Refusal) -> None:
        """The next chat completions answer these, in order (after any scripted failure)."""
        self._chat_script.extend(replies)

    def fail_next(self, count: int, status: int, headers: dict[str, str] | None = None) -> None:
        self._failures.extend(Failure(status, headers or {}) for _ in range(count))

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.requests if p == path]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _record(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body: dict[str, Any] = await request.json()
        self.requests.append((request.path, body))
        if self._failures:
            failure = self._failures.popleft()
            error = {"error": {"message": f"scripted {failure.status}", "type": "scripted", "code": None}}
            return body, web.json_response(error, status=failure.status, headers=failure.headers)
        return body, None

    async def _embeddings(self, request: web.Request) -> web.Response:
        body, failed = await self._record(request)
        if failed is not None:
            return failed
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = int(body.get("dimensions") or DIMENSIONS)
        data = []
        for i, text in enumerate(texts):
            vector = embed(text, dims)
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(len(_WORD.findall(t.lower())) for t in texts)
        return web.json_response({"object": "list", "data": data, "model": body["model"],
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def _chat(self, request: web.Request) -> web.Response:
        body, failed = await self._record(request)
        if failed is not None:
            return failed
        reply = self._chat_script.popleft() if self._chat_script else self.vision_reply
        content, refusal = (None, reply.reason) if isinstance(reply, Refusal) else (reply, None)
        return web.json_response({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content, "refusal": refusal}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })


@asynccontextmanager
async def running_fake_openai() -> AsyncIterator[FakeOpenAI]:
    """The fake listening on a free port of 127.0.0.1; `base_url` ends in /v1 like OpenAI's."""
    fake = FakeOpenAI()
    runner, port = await serve_local(fake.app())
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        await runner.cleanup()


def vision_json(**fields: Any) -> str:
    return json.dumps(fields)
