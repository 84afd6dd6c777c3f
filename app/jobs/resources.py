"""What every job receives besides its payload: the process's resources — the engine's share
(Redis, PostgreSQL, metrics, the enqueuer, dead letters) plus circuit breakers and the provider
clients, built on first use from settings; one that is not configured is None and its jobs
finish `skipped`.

Jobs annotate `Job` (`JobContext[Resources]`): `async def run(job: Job, p: MyPayload)`. The
runtime opens them at start-up (app/runtime/startup.py); the sidecar and the CLI use them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TypeAlias

import asyncpg
import structlog
from redis.asyncio import Redis

from app.config import Settings
from app.documents.ocr import OcrEngine
from app.metrics import Metrics
from app.notify import Notifier
from app.providers.breakers import Breakers
from app.providers.embedding import EmbeddingProvider, LocalEmbeddings, choose_embedding_provider
from app.providers.google import GoogleCalendar
from app.providers.openai import OpenAIClient
from app.providers.storage import Storage, build_storage
from app.queue.context import JobContext
from app.queue.dead_letters import DeadLetters
from app.queue.enqueue import Enqueuer
from app.queue.registry import Registry
from app.queue.resources import EngineResources, durability_of

log = structlog.get_logger(__name__)


class ProviderClients:
    """Each external service's client, built on first use and closed with the resources."""

    def __init__(self, settings: Settings, breakers: Breakers, db: asyncpg.Pool, redis: Redis,
                 metrics: Metrics) -> None:
        self._settings, self._breakers, self._db, self._redis, self._metrics = settings, breakers, db, redis, metrics

    @cached_property
    def openai(self) -> OpenAIClient | None:
        """None when OPENAI_API_KEY is not set."""
        if self._settings.openai.api_key is None:
            return None
        return OpenAIClient(self._settings.openai, self._breakers)

    @cached_property
    def storage(self) -> Storage:
        return build_storage(self._settings.storage, self._settings.s3)

    @cached_property
    def ocr(self) -> OcrEngine:
        return OcrEngine.from_settings(self._settings.ocr)

    @cached_property
    def notifier(self) -> Notifier:
        return Notifier(self._settings, self._db, self._redis, self._breakers, self._metrics)

    @cached_property
    def _local_embeddings(self) -> LocalEmbeddings:
        return LocalEmbeddings()

    @property
    def embedding(self) -> EmbeddingProvider | None:
        """The configured embedding provider, or None (app.providers.embedding says why)."""
        return choose_embedding_provider(self._settings.embedding, self.openai, lambda: self._local_embeddings)

    @cached_property
    def google(self) -> GoogleCalendar | None:
        """None when GOOGLE_CLIENT_ID or GOOGLE_CLIENT_SECRET is not set."""
        if not self._settings.google.client_id or self._settings.google.client_secret is None:
            return None
        return GoogleCalendar(self._settings.google, self._breakers)

    async def aclose(self) -> None:
        built = [name for name in ("openai", "storage", "ocr", "notifier", "google") if name in self.__dict__]
        for name in built:
            client = self.__dict__.pop(name)
            if client is None:
                continue
            try:
                await client.aclose()
            except Exception as exc:  # closing is best effort; the process is stopping anyway
                log.warning("client_close_failed", client=name, error=str(exc))


@dataclass(frozen=True, kw_only=True)
class Resources(EngineResources):
    breakers: Breakers
    providers: ProviderClients
    embedded_alone: bool = False
    """This process found no other using the embedded default: no worker runs on it."""


Job: TypeAlias = JobContext[Resources]
"""What every job function receives: `async def run(job: Job, p: MyPayload)`."""


def build_resources(settings: Settings, registry: Registry, redis_url: str, database_url: str, redis: Redis,
           db: asyncpg.Pool, *, embedded_alone: bool) -> Resources:
    metrics = Metrics()
    breakers = Breakers(
        failure_threshold=settings.breaker.failure_threshold,
        reset_timeout_s=settings.breaker.reset_timeout_s,
        on_change=lambda p, s: metrics.breaker_state.labels(p).set(int(s)),
    )
    for provider, state in breakers.states().items():
        metrics.breaker_state.labels(provider).set(int(state))
    return Resources(
        settings=settings, registry=registry, redis_url=redis_url, database_url=database_url,
        redis=redis, db=db, metrics=metrics, breakers=breakers,
        enqueuer=Enqueuer(redis, registry, durability=durability_of(settings)), dlq=DeadLetters(db, redis),
        providers=ProviderClients(settings, breakers, db, redis, metrics), embedded_alone=embedded_alone,
    )
