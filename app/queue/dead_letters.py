"""Dead letters in PostgreSQL: put, list, show, retry and purge.

A job lands here after its last attempt, after a permanent error, or when arq fails it before
it ever runs (expired, unknown function, undecodable payload, too many crash recoveries). The
row keeps everything needed to understand and replay it.
"""

from __future__ import annotations

import builtins
import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

from app.errors import NotFound
from app.queue.enqueue import Enqueuer


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


class DeadLetters:
    def __init__(self, db: asyncpg.Pool) -> None:
        self.db = db

    async def put(
        self, *, job_id: str, job_name: str, queue: str, payload: Any, attempts: int,
        error_class: str, error_message: str, traceback: str | None = None, raw_payload: str | None = None,
    ) -> int:
        """Store a dead letter; a job already dead-lettered and not retried updates its row."""
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
            job_id, job_name, queue, payload, raw_payload, attempts, error_class, error_message, traceback,
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

    async def retry_all(self, enqueuer: Enqueuer, *, queue: str | None = None) -> builtins.list[tuple[int, str]]:
        ids = await self.db.fetch(
            "SELECT id FROM dead_letters WHERE status = 'DEAD' AND ($1::text IS NULL OR queue = $1) ORDER BY id",
            queue,
        )
        return [(r["id"], await self.retry(r["id"], enqueuer)) for r in ids]

    async def purge(self, *, queue: str | None = None, older_than: dt.timedelta | None = None) -> int:
        """Delete dead letters (any status) of `queue`, last failed more than `older_than` ago."""
        result: str = await self.db.execute(
            """DELETE FROM dead_letters
                WHERE ($1::text IS NULL OR queue = $1)
                  AND ($2::interval IS NULL OR last_failed_at < now() - $2::interval)""",
            queue, older_than,
        )
        return int(result.split()[-1])

    async def depth(self) -> dict[str, int]:
        rows = await self.db.fetch("SELECT queue, count(*) AS n FROM dead_letters WHERE status = 'DEAD' GROUP BY queue")
        return {r["queue"]: r["n"] for r in rows}
