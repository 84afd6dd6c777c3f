"""One pub/sub connection per process that wakes waiting workers and tracks paused queues.

Every enqueue publishes on its queue's wake channel; the hub sets that queue's event so its
Worker polls at once instead of at the next fallback poll. Pub/sub may drop a message (or the
connection, or a producer may not publish at all): the fallback poll keeps correctness. So that
an idle process costs Redis less than one polling worker would, the fallback is one sweep per process,
not one poll per queue: a single `EXISTS` over every unpaused queue, which wakes the workers
of queues they last saw empty when more queues hold jobs than their workers know of. A worker
whose queue holds jobs, or that has seen no sweep since its last poll, still polls by itself.
The paused set is re-read on each control message, on reconnect and every few seconds. The
same connection receives the jobs enqueues hand to this process (app/queue/handoff.py); its
messages are handled inside the socket's read callback (app/queue/subscriber.py), so a handoff
starts its job without waiting for the hub's own turn on the loop.

Stock arq clients publish nothing: their ZADDs reach the hub as keyspace notifications, where the
server sends them (app/queue/notifications.py, checked again at every reconnect, since a
restarted server forgets a CONFIG SET). Only "zadd" wakes a worker: the engine's own finishes
(ZREM) are announced too, and must not make every worker poll. A ZADD to arq's abort set asks the
engine to look for running jobs to cancel (`on_abort`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, RedisError

from app.backoff import CONNECT_BACKOFF
from app.metrics import Metrics
from app.queue import control, handoff, keys, notifications, sentinel
from app.queue.claims import Claimed
from app.queue.notifications import KeyspaceNotifications
from app.queue.subscriber import Subscription

log = structlog.get_logger(__name__)

# Only a safety net: control messages and reconnects re-read the paused set at once.
PAUSED_REFRESH_S = 5.0
DEFAULT_SWEEP_S = 1.0


_ZADD = b"zadd"


class WakeHub:
    def __init__(self, redis: Redis, queues: list[str], instance: str, *, metrics: Metrics,
                 keyspace: notifications.Mode = "enable", on_abort: Callable[[], None] = lambda: None) -> None:
        self.redis = redis
        self.instance = instance
        """The worker process this hub serves (app/queue/liveness.py)."""
        self.queues = queues
        self.events: dict[str, asyncio.Event] = {q: asyncio.Event() for q in queues}
        self.keyspace_mode = keyspace
        self.keyspace = KeyspaceNotifications(False, "not checked yet")
        """Whether stock arq clients' ZADDs reach this hub (the last check, at connect)."""
        self.on_abort = on_abort
        self._woken_by = {(q, source): metrics.wakeups.labels(q, source)
                          for q in queues for source in ("publish", "keyspace", "sweep")}
        self.paused: set[str] = set()
        self.connected = asyncio.Event()
        self.sweep_every_s = DEFAULT_SWEEP_S
        self.swept_at = float("-inf")
        """Monotonic time at which the latest successful sweep began."""
        self.on_handoff: dict[str, Callable[[Claimed], None]] = {}
        """queue -> its worker's taker of handed-off jobs (removed when the worker stops taking jobs)."""
        self._has_jobs = dict.fromkeys(queues, False)
        self._registered = asyncio.Event()
        self._giving_back: set[asyncio.Task[None]] = set()
        self.giving_back: set[str] = set()
        """Ids of the jobs being given back right now."""
        self._give_back_script = handoff.GiveBack(redis, instance)
        self._tasks: list[asyncio.Task[None]] = []
        self._attention = asyncio.Event()

    def is_paused(self, queue: str) -> bool:
        return queue in self.paused

    def register(self, queue: str, fallback_s: float) -> None:
        """A worker of `queue` waits at most `fallback_s` for work it was not told about."""
        first = not self._registered.is_set()
        self.sweep_every_s = fallback_s if first else min(self.sweep_every_s, fallback_s)
        self._registered.set()

    def saw(self, queue: str, *, has_jobs: bool) -> None:
        """What a worker found when it last read its queue (running jobs count as jobs)."""
        self._has_jobs[queue] = has_jobs

    def swept_since(self, monotonic_t: float) -> bool:
        return self.swept_at > monotonic_t

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="wake-hub"),
                       asyncio.create_task(self._sweep_forever(), name="wake-sweep")]

    async def stop(self) -> None:
        if self._giving_back:
            await asyncio.wait(self._giving_back, timeout=2.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def sweep(self) -> None:
        """Wake the workers that think their queue is empty if more queues hold jobs than known."""
        started = time.monotonic()
        active = [q for q in self.queues if q not in self.paused]
        if active:
            # A queue whose waiting jobs are all prioritised holds them in its prioritised ZSET.
            holding = int(await self.redis.exists(*active, *map(keys.prioritized_key, active)))
            if holding > sum(self._has_jobs[q] for q in active):
                for q in active:
                    if not self._has_jobs[q]:
                        self._wake(q, "sweep")
        self.swept_at = started

    async def _sweep_forever(self) -> None:
        await self._registered.wait()  # the workers' fallback sets the pace
        while True:
            await asyncio.sleep(self.sweep_every_s)
            try:
                await self.sweep()
            except (RedisError, OSError) as exc:
                # The workers see no fresh sweep and poll by themselves meanwhile.
                log.debug("wake_sweep_failed", error=str(exc))

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                self.connected.clear()
                failures += 1
                delay = CONNECT_BACKOFF.delay_s(failures)
                log.warning("wake_hub_disconnected", error=str(exc), retry_in_s=round(delay, 3))
                # Workers fall back to polling meanwhile; wake them so they notice sooner.
                self._wake_all()
                await asyncio.sleep(delay)
            else:
                failures = 0

    def _routes(self) -> dict[bytes, Callable[[bytes], None]]:
        """Channel -> what a message on it does."""
        db = int(self.redis.connection_pool.connection_kwargs.get("db") or 0)
        routes: dict[bytes, Callable[[bytes], None]] = {
            keys.handoff_channel(self.instance).encode(): self._hand_over,
            keys.CONTROL_CHANNEL.encode(): lambda _: self._attention.set(),
            **{keys.wake_channel(q).encode(): self._on_publish(q) for q in self.queues},
        }
        if self.keyspace_mode != "off":
            routes[keys.keyspace_channel(db, keys.ABORT_SET).encode()] = self._on_abort_zadd
            routes.update({keys.keyspace_channel(db, q).encode(): self._on_zadd(q) for q in self.queues})
        return routes

    def _on_publish(self, queue: str) -> Callable[[bytes], None]:
        return lambda _: self._wake(queue, "publish")

    def _on_zadd(self, queue: str) -> Callable[[bytes], None]:
        def woken(event: bytes) -> None:
            if event == _ZADD:
                self._wake(queue, "keyspace")
        return woken

    def _on_abort_zadd(self, event: bytes) -> None:
        if event == _ZADD:
            self.on_abort()

    def _wake(self, queue: str, source: str) -> None:
        self._woken_by[queue, source].inc()
        self.events[queue].set()

    async def _check_keyspace(self) -> None:
        found = await notifications.ensure(self.redis, self.keyspace_mode)
        if found != self.keyspace:
            (log.info if found.on else log.warning)("keyspace_notifications", on=found.on, detail=found.detail)
        self.keyspace = found

    async def _listen(self) -> None:
        routes = self._routes()

        def on_message(channel: bytes, data: bytes) -> None:
            route = routes.get(channel)
            if route is not None:
                route(data)

        subscription = await Subscription.open(self.redis, [c.decode() for c in routes], on_message)
        subscription.when_lost(self._attention.set)
        try:
            await self._check_keyspace()
            await self._refresh_paused()
            self.connected.set()
            # Workers poll again now that handoffs can reach them: a poll is what enters them in
            # their queue's idle set (and one may have been missed while disconnected).
            self._wake_all()
            while True:
                # A control message (pause, resume) or the connection's loss calls for attention;
                # the paused set is re-read on either, and every few seconds anyway.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PAUSED_REFRESH_S):
                        await self._attention.wait()
                self._attention.clear()
                subscription.raise_if_lost()
                await self._refresh_paused()
                # A primary demoted by a failover keeps its subscribers, and hears less and less.
                moved = subscription.address is not None
                if moved and await sentinel.primary_address(self.redis) != subscription.address:
                    raise ConnectionError("the sentinels name another primary now")
        finally:
            subscription.close()

    def _hand_over(self, data: bytes) -> None:
        try:
            queue, claim = handoff.parse(data)
        except handoff.MalformedHandoff as exc:
            log.warning("handoff_malformed", error=str(exc))
            return
        take = self.on_handoff.get(queue)
        if take is not None:
            take(claim)
        else:  # this process does not (or no longer) serve the queue
            self.give_back(queue, claim.job_id)

    def give_back(self, queue: str, job_id: str) -> None:
        """Return a handed-off job to its queue, in the background (until it is back, the job is
        in `giving_back`: this process's looks must not take it)."""
        self.giving_back.add(job_id)
        task = asyncio.create_task(self._give_back(queue, job_id))
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)

    async def _give_back(self, queue: str, job_id: str) -> None:
        try:
            await self._give_back_script(queue, job_id)
        except (RedisError, OSError) as exc:
            # Locked by a live process that does not run it: this process's next poll takes it
            # (or, once it has stopped, the others through liveness).
            log.warning("handoff_give_back_failed", queue=queue, job_id=job_id, error=str(exc))
        finally:
            self.giving_back.discard(job_id)

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

