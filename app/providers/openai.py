"""OpenAI (or any OpenAI-compatible server at OPENAI_BASE_URL): embeddings and vision extraction.

Every call goes through the "openai" breaker and comes out in our error tree: 429 is
RateLimited with the server's Retry-After, 5xx / 408 / 409 / connection loss / timeout are
TransientError, any other 4xx is PermanentError. The SDK's own retries are off so that our
policy alone decides when to try again.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import openai
from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam

from app.errors import PermanentError, RateLimited, TransientError
from app.providers.breakers import Breakers
from app.providers.retry_after import retry_after_s
from app.settings import Settings

# Statuses the API documents as worth retrying although they are 4xx.
_RETRYABLE_4XX = {408, 409}


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]
    tokens: int


class OpenAIClient:
    """The one client for OpenAI's embeddings and chat (vision) endpoints."""

    def __init__(self, settings: Settings, breakers: Breakers) -> None:
        assert settings.openai_api_key is not None, "built only when OPENAI_API_KEY is set"
        self.settings = settings
        self.breakers = breakers
        self.sdk = openai.AsyncOpenAI(
            api_key=settings.openai_api_key.get_secret_value(), base_url=settings.openai_base_url or None,
            timeout=settings.openai_timeout_s, max_retries=0,
        )

    async def embed(self, texts: Sequence[str], *, model: str) -> Embeddings:
        """One request: a vector per text, in order."""
        async with self._call("embeddings"):
            # "float", not the SDK's base64 default: every OpenAI-compatible server speaks it.
            reply = await self.sdk.embeddings.create(model=model, input=list(texts), encoding_format="float")
        vectors = [item.embedding for item in sorted(reply.data, key=lambda d: d.index)]
        if len(vectors) != len(texts):
            raise TransientError(f"embeddings reply has {len(vectors)} vectors for {len(texts)} texts")
        return Embeddings(vectors, reply.usage.total_tokens if reply.usage else 0)

    async def extract_json(self, *, images: Sequence[bytes], instructions: str, schema_name: str,
                           schema: dict[str, Any]) -> str:
        """The vision model's JSON reply (constrained to `schema`) about the page images."""
        parts: list[ChatCompletionContentPartParam] = [{"type": "text", "text": "The document's pages follow."}]
        for png in images:
            url = "data:image/png;base64," + base64.b64encode(png).decode()
            parts.append({"type": "image_url", "image_url": {"url": url, "detail": "high"}})
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": instructions},
            {"role": "user", "content": parts},
        ]
        async with self._call("chat.completions"):
            reply = await self.sdk.chat.completions.create(
                model=self.settings.openai_vision_model, messages=messages, temperature=0,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": schema_name, "schema": schema, "strict": True}},
            )
        message = reply.choices[0].message if reply.choices else None
        if message is None or not message.content:
            refusal = message.refusal if message else None
            raise PermanentError(f"the vision model gave no JSON: {refusal or 'empty reply'}")
        return message.content

    @asynccontextmanager
    async def _call(self, endpoint: str) -> AsyncIterator[None]:
        async with self.breakers.guard("openai"):
            try:
                yield
            except openai.RateLimitError as exc:
                raise RateLimited(f"OpenAI {endpoint}: 429 rate limited",
                                  retry_after_s=retry_after_s(exc.response.headers)) from exc
            except openai.APIConnectionError as exc:  # includes APITimeoutError
                raise TransientError(f"OpenAI {endpoint}: {type(exc).__name__}: {exc}") from exc
            except openai.APIStatusError as exc:
                status = exc.status_code
                message = f"OpenAI {endpoint}: {status} {_detail(exc)}"
                if status >= 500 or status in _RETRYABLE_4XX:
                    raise TransientError(message) from exc
                raise PermanentError(message) from exc

    async def aclose(self) -> None:
        await self.sdk.close()


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return exc.message
