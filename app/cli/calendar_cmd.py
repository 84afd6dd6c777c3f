"""`workhorse calendar`: store a newly authorised Google connection, and rotate the token key.

`connect` reads the tokens as JSON on stdin (never as arguments, which `ps` shows to every
user): {"accessToken": "...", "refreshToken": "...", "expiresAt": "2030-01-01T10:00:00Z"}.
They are encrypted with the first CALENDAR_TOKEN_KEYS key before they reach the database.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from app.calendar import connections
from app.calendar.connections import NewConnection
from app.calendar.tokens import TokenCipher
from app.cli.table import print_json
from app.config import Settings, SettingsError
from app.errors import PermanentError
from app.jobs import build_registry
from app.runtime.startup import open_resources

_MAX_STDIN_CHARS = 64_000


class _Tokens(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")

    access_token: str = Field(min_length=1, max_length=8192)
    refresh_token: str = Field(min_length=1, max_length=8192)
    expires_at: dt.datetime


def add_parsers(sub: Any) -> None:
    c = sub.add_parser("calendar", help="Google Calendar connections: connect, rotate-key")
    csub = c.add_subparsers(dest="action", required=True)
    con = csub.add_parser("connect", help="store an authorised connection (tokens as JSON on stdin)")
    con.add_argument("--id", required=True, help="the connection's id")
    con.add_argument("--org", required=True)
    con.add_argument("--user", required=True)
    con.add_argument("--calendar", default="primary", help="Google calendar id (default: primary)")
    con.add_argument("--sync", action="store_true", help="enqueue a full sync right away")
    con.set_defaults(handler=connect)
    rot = csub.add_parser("rotate-key", help="re-encrypt every stored token under the first CALENDAR_TOKEN_KEYS key")
    rot.add_argument("--json", action="store_true")
    rot.set_defaults(handler=rotate_key)


def _cipher(settings: Settings) -> TokenCipher:
    cipher = TokenCipher.from_settings(settings.calendar)
    if cipher is None:
        raise SettingsError("CALENDAR_TOKEN_KEYS is not set")
    return cipher


def read_tokens(text: str) -> _Tokens:
    """The tokens JSON; the error names fields, never values."""
    if len(text) > _MAX_STDIN_CHARS:
        raise PermanentError("the tokens JSON on stdin is too large")
    try:
        tokens = _Tokens.model_validate_json(text)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "(json)" for e in exc.errors())
        raise PermanentError(f"stdin must be {{accessToken, refreshToken, expiresAt}} JSON; bad: {fields}") from None
    if tokens.expires_at.tzinfo is None:
        raise PermanentError("expiresAt needs a time zone (e.g. 2030-01-01T10:00:00Z)")
    return tokens


async def connect(settings: Settings, args: argparse.Namespace) -> int:
    cipher = _cipher(settings)
    tokens = read_tokens(await asyncio.to_thread(sys.stdin.read))
    new = NewConnection(args.id, args.org, args.user, tokens.access_token, tokens.refresh_token,
                        tokens.expires_at, args.calendar)
    async with open_resources(settings, build_registry(settings)) as res:
        await connections.store(res.db, cipher, new)
        if args.sync:
            await res.enqueuer.enqueue("sync_calendar", {"connectionId": new.id, "userId": new.user_id,
                                                         "syncType": "full"},
                                       job_id=connections.sync_job_id(new.id, full=True), replace_result=True)
    print(f"connected {new.id}" + (" (full sync enqueued)" if args.sync else ""))
    return 0


async def rotate_key(settings: Settings, args: argparse.Namespace) -> int:
    cipher = _cipher(settings)
    async with open_resources(settings, build_registry(settings)) as res:
        rotated, unreadable = await connections.rotate_keys(res.db, cipher)
    if args.json:
        print_json({"rotated": rotated, "unreadable": unreadable, "keyId": cipher.primary_key_id})
    else:
        print(f"re-encrypted {rotated} connection(s) under key {cipher.primary_key_id}; "
              f"{unreadable} could not be decrypted with any key")
    return 1 if unreadable else 0
