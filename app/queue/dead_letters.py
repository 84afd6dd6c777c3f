"""Dead letters in PostgreSQL: put, list, show, retry and purge.

A job lands here after its last attempt, after a permanent error, or when arq fails it before
it ever runs (expired, unknown function, undecodable payload, too many crash recoveries). The
row keeps everything needed to understand and replay it.

A dead letter must always be writable. PostgreSQL's text and jsonb refuse NUL characters, so
a payload holding one is kept as escaped JSON text in `raw_payload` (replayed as the original)
and NULs in names and messages are escaped. When the write still fails (PostgreSQL away), the
job is retried later; after MAX_WRITE_TRIES such failures the letter is parked in a Redis hash
instead, where `workhorse dlq list` and /health/detailed show it, so no job loops forever.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from redis.asyncio import Redis

from app.config import SettingsError
from app.errors import AppError, NotFound
from app.queue import keys
from app.queue.enqueue import Enqueuer

log = structlog.get_logger(__name__)

MAX_WRITE_TRIES = 5
"""Failed attempts to store one job's dead letter before it is parked in Redis."""
_WRITE_FAILURES_TTL_S = 86_400


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    job_id: str
    job_name: str
    queue: str
    payload: Any
    raw_payload: str | None
    attempts: int
    error_class: str
    error_message: str
    traceback: str | None
    first_failed_at: dt.datetime
    last_failed_at: dt.datetime
    status: str
    retried_at: dt.datetime | None
    retried_job_id: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> DeadLetter:
        return cls(**dict(row))

    @property
    def replay_payload(self) -> Any:
        """The payload to enqueue again: the stored one, or the original decoded from the escaped
        JSON text it was kept as (a payload with NUL characters)."""
        if self.payload is not None or not self.raw_payload:
            return self.payload
        try:
            return json.loads(self.raw_payload)
        except ValueError:
            return None


def storable_payload(payload: Any) -> tuple[Any, str | None]:
    """(what jsonb can hold, escaped JSON text of what it cannot): jsonb refuses \u0000."""
    try:
        text = json.dumps(payload, default=str)
    except (TypeError, ValueError):
        return None, repr(payload)[:10_000]
    if "\\u0000" in text:
        return None, text
    return payload, None


def storable_text(value: str | None) -> str | None:
    """Text PostgreSQL accepts: NUL characters written as \x00."""
    return value.replace("\x00", "\\x00") if value else value


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    """One letter of `retry_all`: the job it was enqueued as, or why it was refused."""

    dead_letter_id: int
    job_id: str | None
    refused: str | None = None


class DeadLetters:
    def __init__(self, db: asyncpg.Pool, redis: Redis | None = None) -> None:
        self.db = db
        self.redis = redis
        """Where letters PostgreSQL keeps refusing are parked (None: no parking, errors raise)."""

    async def put(
        self, *, job_id: str, job_name: str, queue: str, payload: Any, attempts: int,
        error_class: str, error_message: str, traceback: str | None = None, raw_payload: str | None = None,
    ) -> int | None:
        """Store a dead letter and return its id; a job already dead-lettered and not retried
        updates its row. None: PostgreSQL refused it MAX_WRITE_TRIES times and it is parked."""
        stored, escaped = storable_payload(payload)
        row = dict(job_id=storable_text(job_id) or "", job_name=storable_text(job_name) or "",
                   queue=storable_text(queue) or "", payload=stored, raw_payload=storable_text(raw_payload or escaped),
                   attempts=attempts, error_class=storable_text(error_class) or "",
                   error_message=storable_text(error_message) or "", traceback=storable_text(traceback))
        try:
            return await self._insert(row)
        except Exception as exc:
            if self.redis is None or not await self._give_up(job_id, row, exc):
                raise
            return None

    async def _give_up(self, job_id: str, row: dict[str, Any], exc: Exception) -> bool:
        """Count a failed write; past MAX_WRITE_TRIES park the letter in Redis and say so."""
        assert self.redis is not None
        failures_key = keys.dead_letter_write_failures_key(job_id)
        failures = int(await self.redis.incr(failures_key))
        await self.redis.expire(failures_key, _WRITE_FAILURES_TTL_S)
        if failures < MAX_WRITE_TRIES:
            return False
        letter = {**row, "payload": row["payload"], "storeError": f"{type(exc).__name__}: {exc}",
                  "parkedAt": dt.datetime.now(dt.UTC).isoformat()}
        await self.redis.hset(keys.PARKED_DEAD_LETTERS, job_id, json.dumps(letter, default=str))
        log.error("dead_letter_parked", job_id=row["job_id"], queue=row["queue"], failures=failures,
                  error=letter["storeError"])
        return True

    async def parked(self) -> builtins.list[dict[str, Any]]:
        """Letters PostgreSQL refused, parked in Redis (`unpark()` moves them once it accepts)."""
        if self.redis is None:
            return []
        raw = await self.redis.hgetall(keys.PARKED_DEAD_LETTERS)
        return [json.loads(v) for v in raw.values()]

    async def parked_count(self) -> int:
        """How many letters wait in Redis for PostgreSQL to take them (operators should look)."""
        if self.redis is None:
            return 0
        return int(await self.redis.hlen(keys.PARKED_DEAD_LETTERS))

    async def unpark(self) -> int:
        """Write parked letters to PostgreSQL; returns how many moved."""
        if self.redis is None:
            return 0
        moved = 0
        for job_id, raw in (await self.redis.hgetall(keys.PARKED_DEAD_LETTERS)).items():
            letter = json.loads(raw)
            row = {k: letter[k] for k in ("job_id", "job_name", "queue", "payload", "raw_payload", "attempts",
                                          "error_class", "error_message", "traceback")}
            await self._insert(row)
            await self.redis.hdel(keys.PARKED_DEAD_LETTERS, job_id)
            moved += 1
        return moved

    async def _insert(self, row: dict[str, Any]) -> int:
        row_id: int = await self.db.fetchval(
            """
            INSERT INTO dead_letters (job_id, job_name, queue, payload, raw_payload, attempts,
                                      error_class, error_message, traceback)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (job_id) WHERE status = 'DEAD' DO UPDATE
               SET attempts = dead_letters.attempts + EXCLUDED.attempts,
                   error_class = EXCLUDED.error_class, error_message = EXCLUDED.error_message,
                   traceback = EXCLUDED.traceback, last_failed_at = now()
            RETURNING id
            """,
            row["job_id"], row["job_name"], row["queue"], row["payload"], row["raw_payload"], row["attempts"],
            row["error_class"], row["error_message"], row["traceback"],
        )
        return row_id

    async def list(self, *, queue: str | None = None, limit: int = 50, status: str = "DEAD") -> list[DeadLetter]:
        rows = await self.db.fetch(
            """SELECT * FROM dead_letters
                WHERE status = $1 AND ($2::text IS NULL OR queue = $2)
                ORDER BY last_failed_at DESC, id DESC LIMIT $3""",
            status, queue, limit,
        )
        return [DeadLetter.from_row(r) for r in rows]

    async def get(self, dead_letter_id: int) -> DeadLetter:
        row = await self.db.fetchrow("SELECT * FROM dead_letters WHERE id = $1", dead_letter_id)
        if row is None:
            raise NotFound(f"dead letter {dead_letter_id} does not exist")
        return DeadLetter.from_row(row)

    async def retry(self, dead_letter_id: int, enqueuer: Enqueuer) -> str:
        """Enqueue the job again under its own id with a fresh attempt count; mark the row."""
        async with self.db.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM dead_letters WHERE id = $1 AND status = 'DEAD' FOR UPDATE", dead_letter_id
            )
            if row is None:
                raise NotFound(f"dead letter {dead_letter_id} does not exist or was already retried")
            letter = DeadLetter.from_row(row)
            # Validated again: a payload that was the problem is refused here, with its field.
            enqueued = await enqueuer.enqueue(
                letter.job_name, letter.payload, queue=letter.queue, job_id=letter.job_id, replace_result=True
            )
            job_id = enqueued.job_id if enqueued else letter.job_id
            await conn.execute(
                "UPDATE dead_letters SET status = 'RETRIED', retried_at = now(), retried_job_id = $2 WHERE id = $1",
                dead_letter_id, job_id,
            )
        return job_id

    async def retry_all(self, enqueuer: Enqueuer, *, queue: str | None = None) -> builtins.list[RetryOutcome]:
        """Retry every dead letter (of `queue`) on its own, oldest first.

        A letter that is refused today (its payload no longer validates, its job or queue is gone,
        someone else retried it) does not stop the others: it stays DEAD and its outcome says why.
        Only a failure of Redis or PostgreSQL stops the run, since every later letter would fail
        the same way."""
        ids = await self.db.fetch(
            "SELECT id FROM dead_letters WHERE status = 'DEAD' AND ($1::text IS NULL OR queue = $1) ORDER BY id",
            queue,
        )
        outcomes: builtins.list[RetryOutcome] = []
        for r in ids:
            try:
                outcomes.append(RetryOutcome(r["id"], await self.retry(r["id"], enqueuer)))
            except (AppError, SettingsError) as exc:  # the transaction rolled back: the row is still DEAD
                outcomes.append(RetryOutcome(r["id"], None, str(exc)))
        return outcomes

    async def purge(self, *, queue: str | None = None, older_than: dt.timedelta | None = None) -> int:
        """Delete dead letters (any status) of `queue`, last failed more than `older_than` ago."""
        result: str = await self.db.execute(
            """DELETE FROM dead_letters
                WHERE ($1::text IS NULL OR queue = $1)
                  AND ($2::interval IS NULL OR last_failed_at < now() - $2::interval)""",
            queue, older_than,
        )
        return int(result.split()[-1])

    async def delete(self, dead_letter_id: int) -> None:
        """Delete one dead letter (any status); NotFound when there is none with that id."""
        done: str = await self.db.execute("DELETE FROM dead_letters WHERE id = $1", dead_letter_id)
        if done.split()[-1] == "0":
            raise NotFound(f"dead letter {dead_letter_id} does not exist")

    async def depth(self) -> dict[str, int]:
        rows = await self.db.fetch("SELECT queue, count(*) AS n FROM dead_letters WHERE status = 'DEAD' GROUP BY queue")
        return {r["queue"]: r["n"] for r in rows}
