"""The relay: moves committed `job_outbox` rows to the queues, once each (see the package
docstring for the guarantees)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from redis.exceptions import RedisError

from app.backoff import CONNECT_BACKOFF
from app.errors import InvalidPayload, UnknownJob
from app.queue.dead_letters import storable_text
from app.queue.enqueue import Enqueued, Enqueuer, JobRequest
from app.queue.outbox import sql
from app.queue.outbox.rows import ClaimedRow, within_budget
from app.queue.outbox.writer import Db
from app.queue.payload import MAX_PAYLOAD_BYTES, loads_limited
from app.queue.registry import ANY_QUEUE
from app.queue.resources import EngineResources

log = structlog.get_logger(__name__)

CHANNEL = "workhorse_outbox"
ARCHIVE_EVERY_S = 60.0
ARCHIVE_CHUNK = 10_000
GAUGES_EVERY_S = 5.0
LISTENER_PING_S = 30.0
# While the LISTEN connection is up every commit wakes the relay, so polling is only a safety net
# (for rows of a relay that died holding them, say): this slow, not OUTBOX_POLL_INTERVAL_MS.
LISTENING_POLL_S = 5.0
_MAX_ERROR_CHARS = 2000
# Failures that are the servers' and pass: logged as a warning, not with a traceback.
_TRANSIENT = (RedisError, OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
              asyncpg.exceptions.OperatorInterventionError)



@dataclass(frozen=True, slots=True)
class _Refused:
    row: ClaimedRow
    payload: Any
    error: Exception


@dataclass(slots=True)
class BatchResult:
    """What one relay pass did."""

    claimed: int = 0
    dispatched: int = 0
    duplicates: int = 0
    """Rows whose job id was already in Redis (a relay died before its commit, or the writer's id)."""
    failed: int = 0
    more: bool = False
    """The batch was full or cut short: more rows may be waiting now."""


class OutboxRelay:
    def __init__(self, res: EngineResources, *, enqueuer: Enqueuer | None = None) -> None:
        settings = res.settings
        self.res = res
        self.enqueuer = enqueuer or res.enqueuer
        self.batch_size = settings.outbox.batch_size
        self.poll_s = settings.outbox.poll_interval_ms / 1000
        self.listening = asyncio.Event()
        """Set while the LISTEN connection is up (notifications wake the relay at once)."""
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_gauges = self._next_archive = 0.0

    def start(self) -> None:
        """Run the relay in the background (unless OUTBOX_RELAY is off)."""
        if self.res.settings.outbox.relay and self._task is None:
            self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the batch in hand (up to `timeout_s`, then cancel: it rolls back) and stop."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait([self._task], timeout=timeout_s)
            if not done:
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run(self) -> None:
        """Relay until stop(): a batch whenever notified; else every OUTBOX_POLL_INTERVAL_MS while
        the LISTEN connection is down, every LISTENING_POLL_S while it is up."""
        listener = asyncio.create_task(self._listen_forever(), name="outbox-listen")
        failures = 0
        try:
            while not self._stop.is_set():
                self._wake.clear()  # a notification during the batch wakes the next one at once
                try:
                    result = await self.dispatch_batch()
                    await self._housekeep()
                except Exception as exc:  # the relay outlives every failure; the batch rolled back
                    failures += 1
                    _log_failure("outbox_relay_backing_off", exc, CONNECT_BACKOFF.delay_s(failures))
                    await _pause(self._stop, CONNECT_BACKOFF.delay_s(failures))
                    continue
                failures = 0
                if not result.more:
                    await _pause(self._wake, LISTENING_POLL_S if self.listening.is_set() else self.poll_s)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def dispatch_batch(self) -> BatchResult:
        """Claim, enqueue and mark one batch in one transaction."""
        claimed: list[int] = []
        try:
            async with self.res.db.acquire() as conn, conn.transaction():
                rows = [ClaimedRow(**r) for r in await conn.fetch(sql.CLAIM, self.batch_size)]
                claimed = [r.id for r in rows]
                taken = within_budget(rows)
                result = BatchResult(claimed=len(rows), more=len(rows) == self.batch_size or len(taken) < len(rows))
                if taken:
                    lags = await self._dispatch(conn, taken, result)
        except Exception as exc:
            if claimed:
                await self._note_attempt(claimed, exc)
            raise
        if taken:
            self._observe(result, lags)
        return result

    async def _dispatch(self, conn: Db, rows: list[ClaimedRow], result: BatchResult) -> list[float]:
        texts = {r["id"]: r["payload"] for r in await conn.fetch(
            sql.PAYLOADS, [r.id for r in rows if r.payload_bytes <= MAX_PAYLOAD_BYTES])}
        planned, refused = self._plan(rows, texts)
        enqueued = await self._enqueue([request for _, request in planned])
        for f in refused:  # dead letters first: a crash before the commit only repeats them
            await self._dead_letter(f)
        if refused:
            await conn.execute(sql.MARK_FAILED, [f.row.id for f in refused],
                               [storable_text(str(f.error)[:_MAX_ERROR_CHARS]) for f in refused])
        lags = await conn.fetch(sql.MARK_DISPATCHED, [row.id for row, _ in planned],
                                [row.dispatch_id for row, _ in planned])
        result.dispatched = sum(1 for e in enqueued if e is not None)
        result.duplicates = len(enqueued) - result.dispatched
        result.failed = len(refused)
        return [r["lag_s"] for r in lags]

    async def _enqueue(self, requests: list[JobRequest]) -> list[Enqueued | None]:
        """The Redis write, in one round trip (the step a crash test interrupts)."""
        return await self.enqueuer.enqueue_many(requests) if requests else []

    def _plan(self, rows: list[ClaimedRow],
              texts: dict[int, str]) -> tuple[list[tuple[ClaimedRow, JobRequest]], list[_Refused]]:
        """Each row's job request, or why it can never be enqueued."""
        planned: list[tuple[ClaimedRow, JobRequest]] = []
        refused: list[_Refused] = []
        for row in rows:
            payload: Any = None
            try:
                if row.id not in texts:
                    raise InvalidPayload(row.job_name, {"(payload)": f"{row.payload_bytes} bytes of JSON; at most "
                                                                     f"{MAX_PAYLOAD_BYTES} are accepted"})
                payload = loads_limited(row.job_name, texts[row.id])
                spec, parsed, queue = self.res.registry.validate(row.job_name, payload, row.queue)
            except Exception as exc:  # PermanentError, UnknownQueue, or a bug in a payload model
                refused.append(_Refused(row, payload, exc))
                continue
            planned.append((row, JobRequest(spec.name, parsed, queue=queue, job_id=row.dispatch_id,
                                            run_at=row.run_at, priority=row.priority)))
        return planned, refused

    async def _dead_letter(self, f: _Refused) -> None:
        log.warning("outbox_row_failed", row_id=f.row.id, job=f.row.job_name[:200],
                    error=storable_text(str(f.error)[:_MAX_ERROR_CHARS]))
        await self.res.dlq.put(
            job_id=f.row.dispatch_id, job_name=f.row.job_name, queue=self._queue_of(f.row), payload=f.payload,
            attempts=1, error_class=type(f.error).__name__, error_message=f"outbox row {f.row.id}: {f.error}")

    def _queue_of(self, row: ClaimedRow) -> str:
        """The queue a dead letter is filed under: the job's own, else the row's, else ''."""
        try:
            spec = self.res.registry.spec(row.job_name)
        except UnknownJob:
            return row.queue or ""
        return spec.queue if spec.queue != ANY_QUEUE else row.queue or ""

    async def _note_attempt(self, ids: list[int], exc: Exception) -> None:
        """Record a rolled-back attempt on its rows, if PostgreSQL is there to take it."""
        with contextlib.suppress(Exception):
            await self.res.db.execute(sql.NOTE_ATTEMPT, ids,
                                         storable_text(f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]))

    def _observe(self, result: BatchResult, lags: list[float]) -> None:
        m = self.res.metrics
        m.outbox_batch_size.observe(result.claimed)
        for outcome, n in (("dispatched", result.dispatched), ("duplicate", result.duplicates),
                           ("failed", result.failed)):
            if n:
                m.outbox_rows.labels(outcome).inc(n)
        for lag in lags:
            m.outbox_lag.observe(max(0.0, lag))
        log.debug("outbox_batch", claimed=result.claimed, dispatched=result.dispatched,
                  duplicates=result.duplicates, failed=result.failed)

    async def _housekeep(self) -> None:
        now = time.monotonic()
        if now >= self._next_gauges:
            await self.refresh_gauges()
            self._next_gauges = now + GAUGES_EVERY_S
        if now >= self._next_archive:
            await self.archive()
            self._next_archive = now + ARCHIVE_EVERY_S

    async def refresh_gauges(self) -> None:
        """Rows waiting and the age of the oldest one."""
        row = await self.res.db.fetchrow(sql.WAITING)
        assert row is not None  # an aggregate always returns a row
        self.res.metrics.outbox_waiting.set(row["waiting"])
        self.res.metrics.outbox_oldest.set(row["oldest_s"])

    async def archive(self) -> int:
        """Move rows DISPATCHED more than OUTBOX_ARCHIVE_AFTER_S ago to job_outbox_archive."""
        after_s = float(self.res.settings.outbox.archive_after_s)
        moved = 0
        while True:
            status: str = await self.res.db.execute(sql.ARCHIVE, after_s, ARCHIVE_CHUNK)
            n = int(status.split()[-1])  # "INSERT 0 <rows>"
            moved += n
            if n < ARCHIVE_CHUNK:
                break
        if moved:
            log.info("outbox_archived", rows=moved)
        return moved

    async def _listen_forever(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
                failures = 0
            except Exception as exc:  # reconnect whatever went wrong; polling covers the gap
                failures += 1
                _log_failure("outbox_listen_failed", exc, CONNECT_BACKOFF.delay_s(failures))
            await _pause(self._stop, CONNECT_BACKOFF.delay_s(max(failures, 1)))

    async def _listen(self) -> None:
        """LISTEN until the connection is lost (pinged every LISTENER_PING_S to find out)."""
        conn = await asyncpg.connect(self.res.database_url, timeout=10)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(CHANNEL, self._notified)
            self.listening.set()
            self._wake.set()  # rows committed while nobody listened
            while not lost.is_set():
                await _pause(lost, LISTENER_PING_S)
                if not lost.is_set():
                    await conn.execute("SELECT 1", timeout=5)
            log.warning("outbox_listen_lost")
        finally:
            self.listening.clear()
            self._wake.set()  # the relay goes back to polling at OUTBOX_POLL_INTERVAL_MS
            conn.terminate()

    def _notified(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake.set()


async def _pause(event: asyncio.Event, seconds: float) -> None:
    """Wait until `event` is set or `seconds` have passed."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


def _log_failure(event: str, exc: Exception, retry_in_s: float) -> None:
    if isinstance(exc, _TRANSIENT):
        log.warning(event, error=f"{type(exc).__name__}: {exc}", retry_in_s=round(retry_in_s, 3))
    else:
        log.error(event, error=f"{type(exc).__name__}: {exc}", retry_in_s=round(retry_in_s, 3), exc_info=exc)
