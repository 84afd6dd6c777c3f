"""`workhorse calendar` as an operator uses it: rotate-key re-encrypts every connection under the
new key (and reports rows no key opens); connect reads tokens from standard input and stores them
encrypted, never echoing a value."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
from collections.abc import Callable

import pytest
from cryptography.fernet import Fernet

from app.calendar import connections
from app.calendar.connections import NewConnection
from app.calendar.tokens import TokenCipher, key_id
from app.cli import build_parser, calendar_cmd
from app.config import Settings
from app.errors import PermanentError
from app.jobs.resources import Resources

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


async def test_rotate_key_re_encrypts_every_connection_under_the_new_key(
        make_settings: Callable[..., Settings], res: Resources, capsys: pytest.CaptureFixture[str]) -> None:
    """`workhorse calendar rotate-key` with NEW,OLD: every row written under OLD is rewritten under
    NEW (readable with NEW alone, its key id updated); a second run has nothing to do."""
    for i in range(3):
        await connections.store(res.db, TokenCipher([OLD]), NewConnection(f"c{i}", "o", f"u{i}", f"ya29.a{i}",
                                                                           f"1//r{i}", LATER))
    settings = make_settings(CALENDAR_TOKEN_KEYS=f"{NEW},{OLD}")
    args = build_parser().parse_args(["calendar", "rotate-key", "--json"])
    assert args.handler is calendar_cmd.rotate_key
    assert await args.handler(settings, args) == 0
    assert json.loads(capsys.readouterr().out) == {"rotated": 3, "unreadable": 0, "keyId": key_id(NEW)}
    new_only = TokenCipher([NEW])
    for row in await res.db.fetch("SELECT * FROM calendar_connections ORDER BY id"):
        assert new_only.decrypt(row["access_token_enc"]) == f"ya29.a{row['id'][1:]}"
        assert new_only.decrypt(row["refresh_token_enc"]) == f"1//r{row['id'][1:]}"
        assert row["token_key_id"] == key_id(NEW)
    assert await args.handler(settings, args) == 0
    assert json.loads(capsys.readouterr().out)["rotated"] == 0


async def test_rotate_key_reports_rows_no_key_can_open(
        make_settings: Callable[..., Settings], res: Resources, capsys: pytest.CaptureFixture[str]) -> None:
    """A row under a key that is no longer configured is left alone, counted, and exits 1."""
    await connections.store(res.db, TokenCipher([OLD]), NewConnection("c1", "o", "u1", "a", "r", LATER))
    settings = make_settings(CALENDAR_TOKEN_KEYS=NEW)
    assert await calendar_cmd.rotate_key(settings, argparse.Namespace(json=True)) == 1
    assert json.loads(capsys.readouterr().out)["unreadable"] == 1


async def test_connect_reads_tokens_from_stdin_and_stores_them_encrypted(
        make_settings: Callable[..., Settings], res: Resources, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`workhorse calendar connect` stores the connection with Fernet tokens and enqueues a full
    sync with --sync; malformed stdin is refused naming the field, never echoing a value."""
    settings = make_settings(CALENDAR_TOKEN_KEYS=NEW)
    tokens = {"accessToken": "ya29.from-web", "refreshToken": "1//from-web", "expiresAt": "2030-01-01T10:00:00Z"}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(tokens)))
    args = build_parser().parse_args(["calendar", "connect", "--id", "c9", "--org", "o", "--user", "u9", "--sync"])
    assert await args.handler(settings, args) == 0
    assert "connected c9" in capsys.readouterr().out
    row = await res.db.fetchrow("SELECT * FROM calendar_connections WHERE id = 'c9'")
    assert row is not None and TokenCipher([NEW]).decrypt(row["access_token_enc"]) == "ya29.from-web"
    assert row["token_expires_at"] == dt.datetime(2030, 1, 1, 10, tzinfo=dt.UTC)
    assert await res.enqueuer.job(connections.sync_job_id("c9", full=True), "calendar-sync").status() == "queued"
    for bad in ('{"accessToken": "ya29.leak"}', "not json ya29.leak", json.dumps({**tokens, "expiresAt": "soon"})):
        monkeypatch.setattr("sys.stdin", io.StringIO(bad))
        with pytest.raises(PermanentError) as caught:
            await args.handler(settings, args)
        assert "leak" not in str(caught.value)
