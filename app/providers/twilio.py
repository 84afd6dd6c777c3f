"""SMS through Twilio's Messages API, with the official client on its asyncio HTTP client."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from app.config.services import TwilioSettings
from app.errors import PermanentError, RateLimited, TransientError
from app.providers.messages import Sms
from app.providers.retry_after import retry_after_s

# A GSM-7 message of up to 306 characters goes as two concatenated segments (153 each);
# anything longer is trimmed and points at the full text instead.
MAX_SMS_CHARS = 306


def fit_sms(body: str, link: str | None, limit: int = MAX_SMS_CHARS) -> str:
    """The body in at most two segments; when trimmed, the link is kept whole at the end."""
    text = " ".join(body.split())
    if len(text) <= limit:
        return text
    tail = f"… {link}" if link else "…"
    return text[: max(0, limit - len(tail))].rstrip() + tail


class TwilioChannel:
    name = "sms"
    provider = "twilio"

    def __init__(self, settings: TwilioSettings) -> None:
        self.settings = settings
        self._client: Client | None = None
        self._http: AsyncTwilioHttpClient | None = None

    def unconfigured_reason(self) -> str | None:
        s = self.settings
        missing = [name for name, value in (
            ("TWILIO_ACCOUNT_SID", s.account_sid), ("TWILIO_AUTH_TOKEN", s.auth_token),
            ("TWILIO_PHONE_NUMBER", s.phone_number)) if not value]
        return f"SMS is not configured ({', '.join(missing)} unset)" if missing else None

    def _twilio(self) -> Client:
        if self._client is None:
            s = self.settings
            assert s.auth_token is not None
            self._http = _HeaderKeepingHttpClient(timeout=s.timeout_s)
            self._client = Client(s.account_sid, s.auth_token.get_secret_value(),
                                  http_client=self._http)
            if s.base_url:
                self._client.api.base_url = s.base_url.rstrip("/")
        return self._client

    async def deliver(self, message: Sms, key: str) -> str:
        try:
            sent = await self._twilio().messages.create_async(
                to=message.to, from_=self.settings.phone_number, body=fit_sms(message.body, message.link))
        except TwilioRestException as exc:
            raise _translate(exc) from exc
        except (TwilioException, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientError(f"Twilio unreachable: {exc}") from exc
        return str(sent.sid)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()


class _HeaderKeepingHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # twilio is untyped
    """Twilio's client drops response headers before raising; this keeps the last response's
    headers in a context variable of the sending task, so a 429 can honour Retry-After."""

    async def request(self, *args: Any, **kwargs: Any) -> Response:
        response: Response = await super().request(*args, **kwargs)
        _last_headers.set(dict(response.headers or {}))
        return response


_last_headers: ContextVar[dict[str, str]] = ContextVar("twilio_last_headers", default={})  # noqa: B039  # never mutated


def _translate(exc: TwilioRestException) -> Exception:
    if exc.status == 429:
        return RateLimited(f"Twilio rate limit: {exc.msg}", retry_after_s=retry_after_s(_last_headers.get()))
    if exc.status >= 500:
        return TransientError(f"Twilio error {exc.status}: {exc.msg}")
    return PermanentError(f"Twilio refused the message ({exc.status}, code {exc.code}): {exc.msg}")
