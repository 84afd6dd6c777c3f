"""Google Calendar v3 (events.list, events.watch, channels.stop) and the OAuth token endpoint, on aiohttp.

Every call goes through the "google" breaker and comes out in our error tree:

    401 from the API               Unauthorized      (PermanentError: the access token is refused)
    400 invalid_grant from OAuth   InvalidGrant      (PermanentError: the user must authorise again)
    410 Gone                       SyncTokenGone     (PermanentError: the sync token expired; full sync)
    429, 403 rateLimitExceeded /
         userRateLimitExceeded     RateLimited       (with Retry-After when sent)
    5xx, 408, connection, timeout,
    a 2xx that is not JSON         TransientError
    any other 4xx                  PermanentError

Tokens go only into headers and form bodies, never into an error message or a log line.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from app.config.services import GoogleSettings
from app.errors import PermanentError, RateLimited, TransientError
from app.providers.breakers import Breakers
from app.providers.retry_after import retry_after_s

_RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"}
_MAX_DETAIL_CHARS = 200


class Unauthorized(PermanentError):
    """The API refused the access token (expired early or revoked): refresh, then try once more."""


class InvalidGrant(PermanentError):
    """The token endpoint refused the refresh token: only the user can authorise again."""


class SyncTokenGone(PermanentError):
    """410 Gone: the sync token is no longer valid; the calendar needs a full sync."""


@dataclass(frozen=True, slots=True)
class TokenGrant:
    access_token: str
    expires_at: dt.datetime
    refresh_token: str | None
    """Set when Google rotated the refresh token."""


@dataclass(frozen=True, slots=True)
class EventsPage:
    items: list[dict[str, Any]]
    time_zone: str | None
    """The calendar's own time zone (all-day events are read in it)."""
    next_page_token: str | None
    next_sync_token: str | None


@dataclass(frozen=True, slots=True)
class WatchChannel:
    channel_id: str
    resource_id: str
    expires_at: dt.datetime | None


class GoogleCalendar:
    """The one client for Google Calendar and Google's OAuth token endpoint."""

    def __init__(self, settings: GoogleSettings, breakers: Breakers) -> None:
        assert settings.client_id and settings.client_secret, "built only when configured"
        self.settings = settings
        self.breakers = breakers
        self.base_url = settings.calendar_base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def refresh(self, refresh_token: str) -> TokenGrant:
        """A new access token for `refresh_token`; InvalidGrant when Google refuses it."""
        s = self.settings
        assert s.client_id and s.client_secret
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
                "client_id": s.client_id, "client_secret": s.client_secret.get_secret_value()}
        body = await self._call("POST", s.token_url, data=form)
        access, expires_in = body.get("access_token"), body.get("expires_in", 3600)
        if not isinstance(access, str) or not access or not isinstance(expires_in, int | float):
            raise TransientError("Google's token endpoint answered without an access token")
        rotated = body.get("refresh_token")
        return TokenGrant(access, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=float(expires_in)),
                          rotated if isinstance(rotated, str) and rotated else None)

    async def list_events(self, access_token: str, calendar_id: str, *, page_size: int,
                          sync_token: str | None = None, window: tuple[dt.datetime, dt.datetime] | None = None,
                          page_token: str | None = None) -> EventsPage:
        """One page of events.list: changes since `sync_token`, or everything in `window`."""
        params: dict[str, str] = {"maxResults": str(page_size), "singleEvents": "true"}
        if sync_token:
            params["syncToken"] = sync_token
        elif window is not None:
            params["timeMin"], params["timeMax"] = (t.isoformat() for t in window)
        if page_token:
            params["pageToken"] = page_token
        body = await self._call("GET", f"{self._calendar(calendar_id)}/events", token=access_token, params=params)
        items = body.get("items", [])
        if not isinstance(items, list):
            raise TransientError("Google's events page has no list of items")
        return EventsPage([i for i in items if isinstance(i, dict)], _str(body.get("timeZone")),
                          _str(body.get("nextPageToken")), _str(body.get("nextSyncToken")))

    async def watch(self, access_token: str, calendar_id: str, *, channel_id: str, channel_token: str,
                    address: str, ttl_s: int) -> WatchChannel:
        """Open a push channel: Google POSTs to `address` whenever the calendar's events change."""
        request = {"id": channel_id, "type": "web_hook", "address": address, "token": channel_token,
                   "params": {"ttl": str(ttl_s)}}
        body = await self._call("POST", f"{self._calendar(calendar_id)}/events/watch", token=access_token,
                                json_body=request)
        resource_id = _str(body.get("resourceId"))
        if not resource_id:
            raise TransientError("Google's watch answer has no resourceId")
        expiration = body.get("expiration")
        expires_at = (dt.datetime.fromtimestamp(int(expiration) / 1000, dt.UTC)
                      if isinstance(expiration, str | int) and str(expiration).isdigit() else None)
        return WatchChannel(channel_id, resource_id, expires_at)

    async def stop_channel(self, access_token: str, channel_id: str, resource_id: str) -> None:
        await self._call("POST", f"{self.base_url}/channels/stop", token=access_token,
                         json_body={"id": channel_id, "resourceId": resource_id}, expect_json=False)

    def _calendar(self, calendar_id: str) -> str:
        return f"{self.base_url}/calendars/{quote(calendar_id, safe='')}"

    async def _call(self, method: str, url: str, *, token: str | None = None, params: Mapping[str, str] | None = None,
                    data: Mapping[str, str] | None = None, json_body: Any = None,
                    expect_json: bool = True) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.breakers.guard("google"):
            try:
                async with self._http().request(method, url, params=params, data=data, json=json_body,
                                                 headers=headers) as response:
                    text = await response.text(errors="replace")
                    status, reply_headers = response.status, dict(response.headers)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise TransientError(f"Google unreachable: {type(exc).__name__}") from exc
            return translate(status, reply_headers, text, expect_json=expect_json)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout, raise_for_status=False)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def translate(status: int, headers: Mapping[str, str], text: str, *, expect_json: bool = True) -> dict[str, Any]:
    """Pure: the JSON body of a 2xx answer, or the error of the tree this answer means."""
    body = _json(text)
    if 200 <= status < 300:
        if body is None and expect_json:
            raise TransientError(f"Google answered {status} with a body that is not a JSON object")
        return body or {}
    reason, detail = _error_reason(body)
    if status == 401:
        raise Unauthorized(f"Google refused the access token ({reason or 'unauthorized'})")
    if status == 400 and reason == "invalid_grant":
        raise InvalidGrant("Google refused the refresh token (invalid_grant): the user must reconnect")
    if status == 410:
        raise SyncTokenGone("Google answered 410 Gone: the sync token expired")
    if status == 429 or (status == 403 and reason in _RATE_LIMIT_REASONS):
        raise RateLimited(f"Google rate limit ({status} {reason or 'too many requests'})",
                          retry_after_s=retry_after_s(headers))
    if status >= 500 or status == 408:
        raise TransientError(f"Google error {status}{f' ({reason})' if reason else ''}")
    raise PermanentError(f"Google refused the request: {status} {reason or ''} {detail}".rstrip())


def _json(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _error_reason(body: dict[str, Any] | None) -> tuple[str | None, str]:
    """(reason, message) of an API error (`{"error": {"errors": [{"reason"}]}}`) or an OAuth
    error (`{"error": "invalid_grant"}`). The message is clipped; it never holds a token."""
    if body is None:
        return None, ""
    error = body.get("error")
    if isinstance(error, str):
        return error, ""
    if not isinstance(error, dict):
        return None, ""
    errors = error.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    reason = _str(first.get("reason")) or _str(error.get("status"))
    return reason, (_str(error.get("message")) or "")[:_MAX_DETAIL_CHARS]


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
