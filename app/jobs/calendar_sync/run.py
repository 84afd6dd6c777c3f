"""`sync_calendar`: bring one connection's Google events into scheduling_events.

Read the connection, refresh its access token when it expires within a minute, then page
through events.list: a full sync over the window (and cancel what Google no longer has), or an
incremental one from the stored sync token; 410 Gone turns into a full sync. Errors propagate
to the registry (the one retry path), except the OAuth answers that only the user can fix:
`invalid_grant` marks the connection NEEDS_REAUTH, tells the user once and finishes skipped.
A dead-lettered sync counts as a failure; the CALENDAR_MAX_CONSECUTIVE_FAILURES-th in a row
deactivates the connection and tells the user once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, Concatenate, ParamSpec, TypeVar

from app.calendar import connections
from app.calendar.connections import Connection
from app.calendar.sync import plan_page, sync_window
from app.calendar.tokens import TokenCipher, TokenUnreadable
from app.config import SettingsError
from app.errors import JobSkipped, NotFound, PermanentError
from app.jobs.calendar_sync import store, watch
from app.jobs.calendar_sync.payloads import SyncCalendar
from app.jobs.resources import Job
from app.notify import Chat
from app.providers.google import GoogleCalendar, InvalidGrant, SyncTokenGone, Unauthorized

P = ParamSpec("P")
T = TypeVar("T")

REFRESH_AHEAD = dt.timedelta(minutes=1)
MAX_PAGES = 2000
"""At 250 events a page, half a million events: beyond that a page token loops, or worse."""
# Two int4 keys: a namespace of their own, apart from the migrations' bigint advisory lock.
_LOCK_CLASS = 0x43414C  # "CAL"


class ConnectionMismatch(PermanentError):
    """The payload's userId is not the connection's user."""


class CipherUnavailable(PermanentError):
    """CALENDAR_TOKEN_KEYS holds a key that is not a Fernet key."""


async def sync_calendar(job: Job, p: SyncCalendar) -> dict[str, Any]:
    google, cipher = _configured(job)
    conn = await connections.load(job.res.db, p.connection_id)
    if p.user_id is not None and p.user_id != conn.user_id:
        raise ConnectionMismatch(f"calendar connection {conn.id!r} does not belong to user {p.user_id!r}")
    if not conn.is_active:
        raise JobSkipped("Connection inactive")
    async with _exclusive(job, conn.id):
        access = Access(job, google, cipher, conn)
        full = p.full or conn.sync_token is None
        try:
            applied = await _pull(job, access, conn, full=full)
        except SyncTokenGone:
            job.log.info("calendar_sync_token_gone", connection_id=conn.id)
            await connections.forget_sync_token(job.res.db, conn.id)
            applied, full = await _pull(job, access, conn, full=True), True
        channel = await watch.ensure(job, access.call, conn)
    result = {"connectionId": conn.id, "syncType": "full" if full else "incremental", **_camel(asdict(applied))}
    job.log.info("calendar_synced", connection_id=conn.id, full=full, created=applied.created,
                 updated=applied.updated, cancelled=applied.cancelled, watch=channel)
    return {**result, "watch": channel}


def _configured(job: Job) -> tuple[GoogleCalendar, TokenCipher]:
    google = job.res.providers.google
    if google is None:
        raise JobSkipped("Google Calendar is not configured (GOOGLE_CLIENT_ID / GOOGLE_CLIENT_SECRET unset)")
    try:
        cipher = TokenCipher.from_settings(job.res.settings.calendar)
    except SettingsError as exc:
        raise CipherUnavailable(str(exc)) from None
    if cipher is None:
        raise JobSkipped("calendar tokens cannot be read (CALENDAR_TOKEN_KEYS unset)")
    return google, cipher


async def _pull(job: Job, access: Access, conn: Connection, *, full: bool) -> store.Applied:
    """Every page of one sync, applied page by page; the sync token stored after the last."""
    s = job.res.settings
    window = sync_window(dt.datetime.now(dt.UTC), days_back=s.calendar.sync_days_back,
                         days_ahead=s.calendar.sync_days_ahead) if full else None
    applied, seen = store.Applied(), set[str]()
    page_token: str | None = None
    for _ in range(MAX_PAGES):
        page = await access.call(access.google.list_events, conn.calendar_id, page_size=s.calendar.sync_page_size,
                                 sync_token=None if full else conn.sync_token, window=window, page_token=page_token)
        plan = plan_page(page.items, page.time_zone)
        await store.apply(job.res.db, conn, plan, applied)
        seen.update(plan.upserts)
        page_token = page.next_page_token
        if not page_token:
            break
    else:
        raise PermanentError(f"Google sent more than {MAX_PAGES} pages of events; stopped")
    if window is not None:
        await store.cancel_unseen(job.res.db, conn, seen, window, applied)
    await connections.mark_synced(job.res.db, conn.id, page.next_sync_token)
    return applied


class Access:
    """The connection's access token: decrypted when fresh, else refreshed (and stored encrypted);
    refreshed once more when the API refuses it."""

    def __init__(self, job: Job, google: GoogleCalendar, cipher: TokenCipher, conn: Connection) -> None:
        self.job, self.google, self.cipher, self.conn = job, google, cipher, conn
        self._token: str | None = None

    async def call(self, fn: Callable[Concatenate[str, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(await self.token(), *args, **kwargs)
        except Unauthorized:
            self.job.log.info("calendar_access_token_refused", connection_id=self.conn.id)
            return await fn(await self.token(refresh=True), *args, **kwargs)

    async def token(self, *, refresh: bool = False) -> str:
        conn = self.conn
        if self._token is not None and not refresh:
            return self._token
        expires = conn.token_expires_at
        if not refresh and conn.access_token_enc and expires and expires > dt.datetime.now(dt.UTC) + REFRESH_AHEAD:
            self._token = self.cipher.decrypt(conn.access_token_enc, what="access token")
            return self._token
        refresh_token = self.cipher.decrypt(conn.refresh_token_enc, what="refresh token")
        try:
            grant = await self.google.refresh(refresh_token)
        except InvalidGrant as exc:
            await needs_reauth(self.job, conn, str(exc))
            raise JobSkipped("Connection needs reauthorization") from None
        await connections.store_access_token(self.job.res.db, self.cipher, conn.id, grant.access_token,
                                             grant.expires_at, grant.refresh_token)
        self.job.log.info("calendar_token_refreshed", connection_id=conn.id, rotated=grant.refresh_token is not None)
        self._token = grant.access_token
        return self._token


async def needs_reauth(job: Job, conn: Connection, error: str) -> None:
    """NEEDS_REAUTH, and the user told once per authorisation (the key names the episode)."""
    changed = await connections.mark_needs_reauth(job.res.db, conn.id, error)
    job.log.warning("calendar_needs_reauth", connection_id=conn.id, changed=changed)
    await _tell(job, conn, f"calendar-reauth:{conn.episode}", "needs_reauth",
                "Google Calendar stopped accepting our access. Please reconnect your calendar.")


async def count_failure(job: Job, p: SyncCalendar, exc: BaseException) -> None:
    """The dead-letter hook: one more failed sync; deactivate (and tell the user) at the limit.

    Failures that are not the connection's (no such connection, another user's id, keys that do
    not open any token: an operator's mistake) are not counted."""
    if isinstance(exc, NotFound | ConnectionMismatch | CipherUnavailable | TokenUnreadable):
        return
    limit = job.res.settings.calendar.max_consecutive_failures
    deactivated = await connections.record_failure(job.res.db, p.connection_id, f"{type(exc).__name__}: {exc}",
                                                   max_failures=limit)
    if not deactivated:
        return
    conn = await connections.load(job.res.db, p.connection_id)
    job.log.warning("calendar_connection_deactivated", connection_id=conn.id, failures=conn.consecutive_failures)
    await _tell(job, conn, f"calendar-deactivated:{conn.episode}", "deactivated",
                f"Calendar sync failed {limit} times in a row and was paused. Please reconnect your calendar.")


async def _tell(job: Job, conn: Connection, key: str, kind: str, body: str) -> None:
    link = f"{job.res.settings.app_base_url.rstrip('/')}/settings/calendar"
    message = Chat(user_id=conn.user_id, org_id=conn.org_id, body=f"{body} {link}",
                   data={"kind": f"calendar_{kind}", "connectionId": conn.id, "link": link})
    await job.res.providers.notifier.send(message, key=key, job_id=job.job_id)


@asynccontextmanager
async def _exclusive(job: Job, connection_id: str) -> AsyncIterator[None]:
    """One sync per connection at a time (a nightly full and a push-driven incremental may meet):
    the later one finishes skipped, since the running one is bringing the same calendar up to date."""
    # A transaction-level lock on a connection of its own: released with the transaction, even if
    # the job is cancelled, so no session state outlives it (pool connections are not reset).
    async with job.res.db.acquire() as lock_conn, lock_conn.transaction():
        if not await lock_conn.fetchval("SELECT pg_try_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS,
                                        connection_id):
            raise JobSkipped("a sync of this connection is already running")
        yield


def _camel(values: dict[str, int]) -> dict[str, int]:
    return {k.split("_")[0] + "".join(w.title() for w in k.split("_")[1:]): v for k, v in values.items()}
