"""An aiohttp server on 127.0.0.1 speaking the part of Twilio's REST API we use (Messages).

The real `twilio` client talks to it (TWILIO_BASE_URL). It checks Basic auth like Twilio,
keeps what it accepted, and can answer the next requests with an error status.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BasicAuth, web

from tests.fakes import serve_local

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token"
FROM_NUMBER = "+15005550006"
INVALID_NUMBER = "+15005550001"
"""Refused with 400, as Twilio's test credentials refuse it."""


@dataclass
class TwilioFake:
    messages: list[dict[str, str]] = field(default_factory=list)
    fail_with: list[int] = field(default_factory=list)
    """Statuses to answer the next requests with, in order."""
    port: int = 0
    _runner: web.AppRunner | None = None
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def env(self) -> dict[str, str]:
        return {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_PHONE_NUMBER": FROM_NUMBER, "TWILIO_BASE_URL": f"http://127.0.0.1:{self.port}"}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create_message)
        self._runner, self.port = await serve_local(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _create_message(self, request: web.Request) -> web.Response:
        auth = BasicAuth.decode(request.headers.get("Authorization", ""))
        if (auth.login, auth.password) != (ACCOUNT_SID, AUTH_TOKEN) or request.match_info["sid"] != ACCOUNT_SID:
            return web.json_response({"code": 20003, "message": "Authenticate", "status": 401}, status=401)
        if self.fail_with:
            status = self.fail_with.pop(0)
            return web.json_response({"code": 20500, "message": "Internal error", "status": status}, status=status)
        form = await request.post()
        to, body = str(form.get("To", "")), str(form.get("Body", ""))
        if to == INVALID_NUMBER:
            return web.json_response({"code": 21211, "message": f"Invalid 'To' Phone Number: {to}",
                                      "status": 400}, status=400)
        sid = f"SM{next(self._ids):032d}"
        self.messages.append({"sid": sid, "to": to, "from": str(form.get("From", "")), "body": body})
        return web.json_response({
            "sid": sid, "account_sid": ACCOUNT_SID, "to": to, "from": form.get("From"), "body": body,
            "status": "queued", "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
        }, status=201)
