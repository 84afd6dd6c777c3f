"""/calendar: Google's push notifications (no bearer token: Google cannot send one; handle_push
verifies the channel token in its headers) and storing a newly authorised connection, as
`workhorse calendar connect` does, for the web app's OAuth callback."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from app.calendar import connections
from app.calendar.push import handle_push
from app.calendar.tokens import TokenCipher
from app.config import SettingsError
from app.errors import InvalidPayload
from app.web.api.body import read_json
from app.web.api.context import api_of, reply
from app.web.api.errors import ApiError, error_reply

if TYPE_CHECKING:
    from app.jobs.resources import Resources

routes = web.RouteTableDef()
_CONNECTION = "calendar connection"


class NewConnectionBody(BaseModel):
    """POST /calendar/connections. Errors name fields, never values (these are secrets)."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, validate_by_alias=True,
                              validate_by_name=False, hide_input_in_errors=True)

    id: str = Field(min_length=1, max_length=200, description="the connection's id")
    org_id: str = Field(min_length=1, max_length=200)
    user_id: str = Field(min_length=1, max_length=200)
    calendar_id: str = Field("primary", min_length=1, max_length=1024, description="Google calendar id")
    access_token: str = Field(min_length=1, max_length=8192)
    refresh_token: str = Field(min_length=1, max_length=8192)
    expires_at: AwareDatetime = Field(description="when the access token expires (ISO-8601 with offset)")
    sync: bool = Field(False, description="enqueue a full sync right away")


@routes.post("/calendar/google/push", name="calendar-google-push")
async def google_push(request: web.Request) -> web.Response:
    answer = await handle_push(api_of(request).res, request.headers)
    if answer.status >= 400:
        return error_reply(answer.status, "push_refused", answer.reason)
    return reply({"status": answer.reason, "jobId": answer.job_id}, answer.status)


@routes.post("/calendar/connections", name="calendar-connect")
async def connect(request: web.Request) -> web.Response:
    api = api_of(request)
    body = _connection(await read_json(request, api.max_body_bytes,
                                       idle_timeout_s=api.res.settings.sidecar.header_timeout_s))
    sync_job_id = await store_connection(api.res, body)
    return reply({"connectionId": body.id, "syncJobId": sync_job_id}, 201)


def _connection(data: object) -> NewConnectionBody:
    try:
        return NewConnectionBody.model_validate(data)
    except ValidationError as exc:
        raise InvalidPayload.from_pydantic(_CONNECTION, exc.errors()) from None


async def store_connection(res: Resources, body: NewConnectionBody) -> str | None:
    """Store the connection, tokens encrypted; the id of the full sync job when one was asked for."""
    try:
        cipher = TokenCipher.from_settings(res.settings.calendar)
    except SettingsError as exc:
        raise ApiError(503, "calendar_not_configured", str(exc)) from None
    if cipher is None:
        raise ApiError(503, "calendar_not_configured", "CALENDAR_TOKEN_KEYS is not set; tokens cannot be stored")
    new = connections.NewConnection(body.id, body.org_id, body.user_id, body.access_token, body.refresh_token,
                                    body.expires_at.astimezone(dt.UTC), body.calendar_id)
    try:
        await connections.store(res.db, cipher, new)
    except connections.ConnectionRefused as exc:
        raise ApiError(409, "connection_refused", str(exc)) from None
    if not body.sync:
        return None
    job_id = connections.sync_job_id(new.id, full=True)
    await res.enqueuer.enqueue("sync_calendar", {"connectionId": new.id, "userId": new.user_id, "syncType": "full"},
                               job_id=job_id, replace_result=True)
    return job_id
