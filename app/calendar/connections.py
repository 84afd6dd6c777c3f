"""Calendar connections: reading one as a typed value, and every change of its state.

States: ACTIVE (synced), NEEDS_REAUTH (Google refused the refresh token), INACTIVE (deactivated
after CALENDAR_MAX_CONSECUTIVE_FAILURES failed syncs), REVOKED / ERROR (set by the web app).
Storing a connection again (the user re-authorised) makes it ACTIVE with a fresh `connected_at`,
which also starts a new episode for "notified once". Tokens are only ever written encrypted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from app.calendar.tokens import TokenCipher, TokenUnreadable
from app.errors import NotFound, PermanentError

Db = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy

_COLUMNS = """id, org_id, user_id, provider, calendar_id, access_token_enc, refresh_token_enc, token_expires_at,
    sync_token, status, consecutive_failures, connected_at, watch_channel_id, watch_resource_id, watch_expires_at"""


@dataclass(frozen=True, slots=True)
class Connection:
    id: str
    org_id: str
    user_id: str
    provider: str
    calendar_id: str
    access_token_enc: bytes | None
    refresh_token_enc: bytes | None
    token_expires_at: dt.datetime | None
    sync_token: str | None
    status: str
    consecutive_failures: int
    connected_at: dt.datetime
    watch_channel_id: str | None
    watch_resource_id: str | None
    watch_expires_at: dt.datetime | None

    @property
    def is_active(self) -> bool:
        return self.status == "ACTIVE"

    @property
    def episode(self) -> str:
        """Names this connection's current authorisation in idempotency keys."""
        return f"{self.id}:{int(self.connected_at.timestamp())}"


@dataclass(frozen=True, slots=True)
class NewConnection:
    """A connection the web app has just authorised, tokens in clear (encrypted before storing)."""

    id: str
    org_id: str
    user_id: str
    access_token: str
    refresh_token: str
    expires_at: dt.datetime
    calendar_id: str = "primary"


class ConnectionRefused(PermanentError):
    """The database refused to store a connection (not Fernet tokens, or another user's id)."""


async def load(db: Db, connection_id: str) -> Connection:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM calendar_connections WHERE id = $1", connection_id)
    if row is None:
        raise NotFound(f"calendar connection {connection_id!r} does not exist")
    return Connection(**dict(row))


async def find_by_channel(db: Db, channel_id: str) -> tuple[Connection, bytes | None] | None:
    """The connection watched by push channel `channel_id`, with the SHA-256 of its token."""
    row = await db.fetchrow(f"SELECT {_COLUMNS}, watch_token_sha256 FROM calendar_connections"
                            " WHERE watch_channel_id = $1", channel_id)
    if row is None:
        return None
    values = dict(row)
    digest = values.pop("watch_token_sha256")
    return Connection(**values), digest


async def store(db: Db, cipher: TokenCipher, new: NewConnection) -> None:
    """Store (or re-authorise) a connection through calendar_store_connection(), tokens encrypted."""
    try:
        await db.execute(
            "SELECT calendar_store_connection($1, $2, $3, $4, $5, $6, $7, $8)",
            new.id, new.org_id, new.user_id, new.calendar_id, cipher.encrypt(new.access_token),
            cipher.encrypt(new.refresh_token), new.expires_at, cipher.primary_key_id)
    except (asyncpg.InvalidParameterValueError, asyncpg.InsufficientPrivilegeError,
            asyncpg.UniqueViolationError) as exc:
        raise ConnectionRefused(f"calendar connection {new.id!r} refused: {exc}") from None


async def store_access_token(db: Db, cipher: TokenCipher, connection_id: str, access_token: str,
                             expires_at: dt.datetime, refresh_token: str | None) -> None:
    """After a refresh: the new access token (and a rotated refresh token), encrypted."""
    await db.execute(
        "UPDATE calendar_connections SET access_token_enc = $2, token_expires_at = $3,"
        " refresh_token_enc = COALESCE($4, refresh_token_enc), token_key_id = CASE WHEN $4::bytea IS NULL"
        " AND token_key_id IS DISTINCT FROM $5 THEN NULL ELSE $5 END WHERE id = $1",
        connection_id, cipher.encrypt(access_token), expires_at,
        cipher.encrypt(refresh_token) if refresh_token else None, cipher.primary_key_id)


async def mark_synced(db: Db, connection_id: str, sync_token: str | None) -> None:
    """A successful sync: its token for the next incremental one, the failure count reset."""
    await db.execute(
        "UPDATE calendar_connections SET sync_token = COALESCE($2, sync_token), last_synced_at = now(),"
        " consecutive_failures = 0, last_error = NULL WHERE id = $1", connection_id, sync_token)


async def forget_sync_token(db: Db, connection_id: str) -> None:
    await db.execute("UPDATE calendar_connections SET sync_token = NULL WHERE id = $1", connection_id)


async def mark_needs_reauth(db: Db, connection_id: str, error: str) -> bool:
    """NEEDS_REAUTH; True when this call made the change (so only one caller notifies)."""
    changed = await db.fetchval(
        "UPDATE calendar_connections SET status = 'NEEDS_REAUTH', last_error = $2 WHERE id = $1"
        " AND status = 'ACTIVE' RETURNING true", connection_id, error)
    return bool(changed)


async def record_failure(db: Db, connection_id: str, error: str, *, max_failures: int) -> bool:
    """Count a failed sync; True when this failure deactivated the connection."""
    row = await db.fetchrow(
        """UPDATE calendar_connections c
           SET consecutive_failures = c.consecutive_failures + 1, last_error = $2,
               status = CASE WHEN c.status = 'ACTIVE' AND c.consecutive_failures + 1 >= $3
                             THEN 'INACTIVE' ELSE c.status END,
               deactivated_at = CASE WHEN c.status = 'ACTIVE' AND c.consecutive_failures + 1 >= $3
                                     THEN now() ELSE c.deactivated_at END
           FROM (SELECT id, status FROM calendar_connections WHERE id = $1 FOR UPDATE) old
           WHERE c.id = old.id
           RETURNING old.status AS old_status, c.status AS new_status""",
        connection_id, error[:1000], max_failures)
    return row is not None and row["old_status"] == "ACTIVE" and row["new_status"] == "INACTIVE"


async def active_page(db: Db, *, after: str, limit: int) -> list[tuple[str, str]]:
    """(id, user_id) of ACTIVE connections with an id above `after`, in id order (keyset pages)."""
    rows = await db.fetch("SELECT id, user_id FROM calendar_connections WHERE status = 'ACTIVE' AND id > $1"
                          " ORDER BY id LIMIT $2", after, limit)
    return [(r["id"], r["user_id"]) for r in rows]


async def store_watch(db: Db, connection_id: str, *, channel_id: str | None, resource_id: str | None,
                      token_sha256: bytes | None, expires_at: dt.datetime | None) -> None:
    await db.execute(
        "UPDATE calendar_connections SET watch_channel_id = $2, watch_resource_id = $3, watch_token_sha256 = $4,"
        " watch_expires_at = $5 WHERE id = $1", connection_id, channel_id, resource_id, token_sha256, expires_at)


async def rotate_keys(db: asyncpg.Pool, cipher: TokenCipher, *, batch: int = 500) -> tuple[int, int]:
    """Re-encrypt every connection not yet under the first key: (rotated, unreadable).

    Rows none of the keys opens are left as they are and counted; each batch is one transaction."""
    rotated = unreadable = 0
    after = ""
    while True:
        async with db.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, access_token_enc, refresh_token_enc FROM calendar_connections WHERE id > $1"
                " AND token_key_id IS DISTINCT FROM $2 ORDER BY id LIMIT $3 FOR UPDATE",
                after, cipher.primary_key_id, batch)
            for row in rows:
                try:
                    access, refresh = (cipher.rotate(row[c]) if row[c] else None
                                       for c in ("access_token_enc", "refresh_token_enc"))
                except TokenUnreadable:
                    unreadable += 1
                    continue
                await conn.execute("UPDATE calendar_connections SET access_token_enc = $2, refresh_token_enc = $3,"
                                   " token_key_id = $4 WHERE id = $1", row["id"], access, refresh,
                                   cipher.primary_key_id)
                rotated += 1
        if len(rows) < batch:
            return rotated, unreadable
        after = rows[-1]["id"]


def sync_job_id(connection_id: str, *, full: bool) -> str:
    """One queued or running sync of each kind per connection: the cron, a push and the web app
    enqueueing at once make one job (enqueued with replace_result, so a finished one does not block)."""
    return f"calendar-sync:{'full' if full else 'incremental'}:{connection_id}"
