"""Calendar connections as the web app stores them once a user authorised Google, the sync job
run on one, and the rows it writes: for the tests of app/jobs/calendar_sync/ against the Google
imitation (tests/fakes/google.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography.fernet import Fernet

from app.calendar import connections
from app.calendar.connections import NewConnection
from app.calendar.tokens import TokenCipher
from app.jobs.resources import Resources
from tests.fakes.google import GoogleFake
from tests.support.jobs import result_of

QUEUE = "calendar-sync"
KEY = Fernet.generate_key().decode()
"""The token key of the tests' connections (CALENDAR_TOKEN_KEYS)."""
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


async def connect(res: Resources, google: GoogleFake, conn_id: str = "c1", user: str = "u1", *,
                  expires_in: dt.timedelta = dt.timedelta(hours=1)) -> tuple[str, str]:
    """A connection as the web app stores it once the user authorised; (access, refresh) in clear."""
    access, refresh = google.issue_access_token(), f"1//refresh-{conn_id}-secret"
    google.refresh_tokens.add(refresh)
    await connections.store(res.db, TokenCipher([KEY]), NewConnection(
        conn_id, "org-1", user, access, refresh, dt.datetime.now(dt.UTC) + expires_in))
    return access, refresh


async def sync(res: Resources, conn_id: str = "c1", user: str = "u1", sync_type: str = "incremental") -> Any:
    """The result of one sync_calendar job for the connection, run by the test's worker."""
    payload = {"connectionId": conn_id, "userId": user, "syncType": sync_type}
    return await result_of(res, await res.enqueuer.enqueue("sync_calendar", payload), QUEUE)


async def events(res: Resources, conn_id: str = "c1") -> dict[str, Any]:
    """The connection's scheduling events, by their Google id."""
    rows = await res.db.fetch("SELECT * FROM scheduling_events WHERE calendar_connection_id = $1", conn_id)
    return {r["external_id"]: r for r in rows}


async def connection(res: Resources, conn_id: str = "c1") -> Any:
    """The connection's row."""
    return await res.db.fetchrow("SELECT * FROM calendar_connections WHERE id = $1", conn_id)
