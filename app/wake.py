"""One pub/sub connection per process that wakes waiting workers and tracks paused queues.

Every enqueue publishes on its queue's wake channel; the hub sets that queue's event so its
Worker polls at once instead of at the next fallback poll. Pub/sub may drop a message (or the
connection): the workers' fallback poll keeps correctness, and the paused set is re-read
every few seconds as well as on each control message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from app import control, keys

log = structlog.get_logger(__name__)

PAUSED_REFRESH_S = 2.0


class WakeHub:
    def __init__(self, redis: ArqRedis, queues: list[str]) -> None:
        self.redis = redis
        self.queues = queues
        self.events: dict[str, asyncio.Event] = {q: asyncio.Event() for q in queues}
        self.paused: set[str] = set()
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def is_paused(self, queue: str) -> bool:
        return queue in self.paused

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wake-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                self.connected.clear()
                log.warning("wake_hub_disconnected", error=str(exc), retry_in_s=delay)
                # Workers fall back to polling meanwhile; wake them so they notice sooner.
                self._wake_all()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                delay = 0.2

    async def _listen(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(keys.CONTROL_CHANNEL, *(keys.wake_channel(q) for q in self.queues))
            await self._refresh_paused()
            self.connected.set()
            next_refresh = time.monotonic() + PAUSED_REFRESH_S
            prefix = keys.wake_channel("")
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=PAUSED_REFRESH_S)
                if message is not None:
                    channel = message["channel"].decode()
                    if channel == keys.CONTROL_CHANNEL:
                        await self._refresh_paused()
                    elif channel.startswith(prefix):
                        event = self.events.get(channel[len(prefix):])
                        if event is not None:
                            event.set()
                if time.monotonic() >= next_refresh:
                    await self._refresh_paused()
                    next_refresh = time.monotonic() + PAUSED_REFRESH_S
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated

    async def _refresh_paused(self) -> None:
        now_paused = await control.paused(self.redis)
        resumed = self.paused - now_paused
        if now_paused != self.paused:
            log.info("paused_queues_changed", paused=sorted(now_paused & set(self.queues)))
        self.paused = now_paused
        for q in resumed:
            if q in self.events:
                self.events[q].set()

    def _wake_all(self) -> None:
        for event in self.events.values():
            event.set()
