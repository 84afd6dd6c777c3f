"""OpenAI (or any OpenAI-compatible server at OPENAI_BASE_URL): embeddings, vision extraction and
structured chat (a JSON reply constrained by a schema, for routing and classification).

Every call goes through the "openai" breaker and comes out in our error tree: 429 is
RateLimited with the server's Retry-After, 5xx / 408 / 409 / connection loss / timeout are
TransientError, any other 4xx is PermanentError. The SDK's own retries are off so that our
policy alone decides when to try again.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import openai
import structlog
from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam

from app.config.services import OpenAISettings
from app.errors import PermanentError, RateLimited, TransientError
from app.providers.breakers import Breakers
from app.providers.retry_after import retry_after_s

# Statuses the API documents as worth retrying although they are 4xx.
_RETRYABLE_4XX = {408, 409}

T = TypeVar("T")

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ChatReply:
    """A structured chat completion: its JSON text, or why there is none (a refusal, or empty)."""

    content: str | None
    refusal: str | None = None


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]
    tokens: int


class OpenAIClient:
    """The one client for OpenAI's embeddings and chat (vision) endpoints."""

    def __init__(self, settings: OpenAISettings, breakers: Breakers) -> None:
        assert settings.api_key is not None, "built only when OPENAI_API_KEY is set"
        self.settings = settings
        self.breakers = breakers
        self.sdk = openai.AsyncOpenAI(
            api_key=settings.api_key.get_secret_value(), base_url=settings.base_url or None,
            timeout=settings.timeout_s, max_retries=0,
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
                model=self.settings.vision_model, messages=messages, temperature=0,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": schema_name, "schema": schema, "strict": True}},
            )
        message = reply.choices[0].message if reply.choices else None
        if message is None or not message.content:
            refusal = message.refusal if message else None
            raise PermanentError(f"the vision model gave no JSON: {refusal or 'empty reply'}")
        return message.content

    async def chat_json(self, *, system: str, user: str, schema_name: str, schema: dict[str, Any],
                        model: str | None = None) -> ChatReply:
        """One chat completion whose reply should be JSON matching `schema` (structured output).

        The reply is returned as is: whether it is valid is the caller's judgement, since a
        compatible server (vLLM, Ollama) may ignore the schema or refuse."""
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        async with self._call("chat.completions"):
            reply = await self.sdk.chat.completions.create(
                model=model or self.settings.chat_model, messages=messages, temperature=0,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": schema_name, "schema": schema, "strict": True}},
            )
        message = reply.choices[0].message if reply.choices else None
        if message is None:
            return ChatReply(None, "no choices in the reply")
        return ChatReply(message.content or None, message.refusal)

    async def ask_json(self, *, system: str, user: str, schema_name: str, schema: dict[str, Any],
                       accept: Callable[[Any], T | None], attempts: int) -> T | None:
        """`accept(parsed JSON)` of the first acceptable reply in `attempts` calls, else None.

        A malformed, invalid or refused reply is asked again (models are not deterministic even
        at temperature 0); HTTP failures are raised at once, for the job's retry policy."""
        for attempt in range(1, attempts + 1):
            reply = await self.chat_json(system=system, user=user, schema_name=schema_name, schema=schema)
            value = _accepted(reply, accept)
            if value is not None:
                return value
            log.warning("model_reply_rejected", schema=schema_name, attempt=attempt, refused=reply.refusal is not None)
        return None

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


def _accepted(reply: ChatReply, accept: Callable[[Any], T | None]) -> T | None:
    if reply.content is None:
        return None
    try:
        return accept(json.loads(reply.content))
    except ValueError:  # JSONDecodeError, and validation errors of the caller's model
        return None


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return exc.message
