"""An aiohttp server on 127.0.0.1 speaking the parts of Google we use: Calendar v3 events.list,
events.watch, channels.stop, and the OAuth token endpoint (refresh_token grant).

Like Google it pages (maxResults, pageToken), hands out a nextSyncToken on the last page,
returns only changes (cancellations included) for a syncToken, answers 410 for a sync token it
forgot, 401 for an access token it did not issue and 400 invalid_grant for a revoked refresh
token. Failures are scripted per endpoint: the next N requests answer a given status, headers
and body (429 with Retry-After, 403 rateLimitExceeded, 500, an HTML page). Every request is
recorded, so tests count exactly what reached "Google".
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import serve_local

CLIENT_ID = "test-client.apps.googleusercontent.com"
CLIENT_SECRET = "test-client-secret"


@dataclass
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    content_type: str = "application/json"


@dataclass
class Calendar:
    time_zone: str = "UTC"
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed_at: dict[str, int] = field(default_factory=dict)
    """Event id → the change number of its last change."""


@dataclass
class GoogleFake:
    port: int = 0
    calendars: dict[str, Calendar] = field(default_factory=dict)
    access_tokens: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """(endpoint, query or form) of every request: endpoint is "events", "token", "watch" or "stop"."""
    channels: list[dict[str, Any]] = field(default_factory=list)
    stopped: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, deque[Scripted]] = field(default_factory=dict)
    forgotten_below: int = 0
    """Sync tokens for changes below this number answer 410 Gone."""
    _change: Any = field(default_factory=lambda: itertools.count(1))
    _issued: Any = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    last_change: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"GOOGLE_CLIENT_ID": CLIENT_ID, "GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
                "GOOGLE_TOKEN_URL": f"{self.url}/token", "GOOGLE_CALENDAR_BASE_URL": f"{self.url}/calendar/v3"}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/calendar/v3/calendars/{cal}/events", self._list)
        app.router.add_post("/calendar/v3/calendars/{cal}/events/watch", self._watch)
        app.router.add_post("/calendar/v3/channels/stop", self._stop)
        app.router.add_post("/token", self._token)
        self._runner, self.port = await serve_local(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- scripting -------------------------------------------------------------------------
    def fail_next(self, endpoint: str, count: int, status: int, *, headers: dict[str, str] | None = None,
                  body: str | None = None, content_type: str = "application/json") -> None:
        self.failures.setdefault(endpoint, deque()).extend(
            Scripted(status, headers or {}, body, content_type) for _ in range(count))

    def calendar(self, calendar_id: str = "primary") -> Calendar:
        return self.calendars.setdefault(calendar_id, Calendar())

    def put(self, event: dict[str, Any], calendar_id: str = "primary") -> dict[str, Any]:
        """Create or change an event: a new etag, `updated` now, a new change number."""
        cal, change = self.calendar(calendar_id), next(self._change)
        self.last_change = change
        stored = {**event, "etag": f'"{change}"', "updated": dt.datetime.now(dt.UTC).isoformat()}
        stored.setdefault("status", "confirmed")
        cal.events[event["id"]], cal.changed_at[event["id"]] = stored, change
        return stored

    def delete(self, event_id: str, calendar_id: str = "primary") -> None:
        existing = self.calendar(calendar_id).events[event_id]
        self.put({**existing, "status": "cancelled"}, calendar_id)

    def forget_sync_tokens(self) -> None:
        self.forgotten_below = self.last_change + 1

    def count(self, endpoint: str) -> int:
        return sum(1 for e, _ in self.requests if e == endpoint)

    def issue_access_token(self) -> str:
        token = f"ya29.fake-access-{next(self._issued)}"
        self.access_tokens.add(token)
        return token

    # --- endpoints -------------------------------------------------------------------------
    def _scripted(self, endpoint: str) -> web.Response | None:
        queue = self.failures.get(endpoint)
        if not queue:
            return None
        f = queue.popleft()
        body = f.body if f.body is not None else (
            '{"error": {"code": %d, "message": "scripted", "errors": [{"reason": "backendError"}]}}' % f.status)
        return web.Response(status=f.status, text=body, headers=f.headers, content_type=f.content_type)

    def _authorised(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.access_tokens

    async def _list(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.requests.append(("events", query))
        scripted = self._scripted("events")
        if scripted is not None:
            return scripted
        if not self._authorised(request):
            return _api_error(401, "authError", "Invalid Credentials")
        size = int(query.get("maxResults", "250"))
        if not 1 <= size <= 2500 or query.get("singleEvents") != "true":
            return _api_error(400, "badRequest", "bad maxResults or singleEvents")
        cal = self.calendar(request.match_info["cal"])
        if "syncToken" in query:
            since = int(query["syncToken"].removeprefix("st-"))
            if since < self.forgotten_below:
                return _api_error(410, "fullSyncRequired", "Sync token is no longer valid")
            items = [e for i, e in cal.events.items() if cal.changed_at[i] > since]
        else:
            lo, hi = dt.datetime.fromisoformat(query["timeMin"]), dt.datetime.fromisoformat(query["timeMax"])
            items = [e for e in cal.events.values() if e["status"] != "cancelled" and _overlaps(e, lo, hi)]
        items.sort(key=lambda e: e["id"])
        offset = int(query.get("pageToken", "pt-0").removeprefix("pt-"))
        page = items[offset:offset + size]
        body: dict[str, Any] = {"kind": "calendar#events", "timeZone": cal.time_zone,
                                "items": [_as_listed(e) for e in page]}
        if offset + size < len(items):
            body["nextPageToken"] = f"pt-{offset + size}"
        else:
            body["nextSyncToken"] = f"st-{self.last_change}"
        return web.json_response(body)

    async def _watch(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("watch", {"id": body.get("id", "")}))
        scripted = self._scripted("watch")
        if scripted is not None:
            return scripted
        if not self._authorised(request):
            return _api_error(401, "authError", "Invalid Credentials")
        ttl = int(body.get("params", {}).get("ttl", "604800"))
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl)
        channel = {**body, "resourceId": f"res-{request.match_info['cal']}", "expiration": str(
            int(expires.timestamp() * 1000))}
        self.channels.append(channel)
        return web.json_response({"kind": "api#channel", "id": body["id"], "resourceId": channel["resourceId"],
                                  "expiration": channel["expiration"]})

    async def _stop(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("stop", {"id": body.get("id", "")}))
        self.stopped.append(body)
        return web.Response(status=204)

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(("token", form))
        scripted = self._scripted("token")
        if scripted is not None:
            return scripted
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") not in self.refresh_tokens:
            return web.json_response({"error": "invalid_grant", "error_description": "Token has been expired or "
                                      "revoked."}, status=400)
        return web.json_response({"access_token": self.issue_access_token(), "expires_in": 3599,
                                  "token_type": "Bearer", "scope": "https://www.googleapis.com/auth/calendar"})


def _api_error(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message,
                                        "errors": [{"domain": "global", "reason": reason, "message": message}]}},
                             status=status)


def _as_listed(event: dict[str, Any]) -> dict[str, Any]:
    """A cancelled event is listed by id and status only, as Google does in incremental syncs."""
    if event["status"] == "cancelled":
        return {"kind": "calendar#event", "id": event["id"], "etag": event["etag"], "status": "cancelled"}
    return {"kind": "calendar#event", **event}


def _overlaps(event: dict[str, Any], lo: dt.datetime, hi: dt.datetime) -> bool:
    def at(when: dict[str, str]) -> dt.datetime:
        if "dateTime" in when:
            return dt.datetime.fromisoformat(when["dateTime"])
        return dt.datetime.combine(dt.date.fromisoformat(when["date"]), dt.time(), dt.UTC)

    return at(event["end"]) > lo and at(event["start"]) < hi


def timed(event_id: str, start: dt.datetime, minutes: int = 60, **extra: Any) -> dict[str, Any]:
    """A timed event as Google lists it."""
    end = start + dt.timedelta(minutes=minutes)
    return {"id": event_id, "summary": extra.pop("summary", f"Event {event_id}"),
            "start": {"dateTime": start.isoformat()}, "end": {"dateTime": end.isoformat()}, **extra}
