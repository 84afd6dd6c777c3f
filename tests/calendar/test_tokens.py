"""OAuth tokens at rest: Fernet with rotation, and the SQL function other languages call (the
`workhorse calendar` commands that manage them: tests/cli/test_calendar_cmd.py)."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest
from cryptography.fernet import Fernet

from app.calendar import connections
from app.calendar.connections import ConnectionRefused, NewConnection
from app.calendar.tokens import TokenCipher, TokenUnreadable, key_id
from app.config import Settings, SettingsError
from app.jobs.resources import Resources

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    """After a new key is put first, tokens written under the old key still read; new writes use
    the new key, which the old key alone cannot read."""
    old_only, both = TokenCipher([OLD]), TokenCipher([NEW, OLD])
    written_before = old_only.encrypt("ya29.secret")
    assert both.decrypt(written_before) == "ya29.secret"
    written_after = both.encrypt("ya29.secret")
    assert written_after.startswith(b"gAAAAA") and b"ya29" not in written_after
    with pytest.raises(TokenUnreadable):
        old_only.decrypt(written_after)
    assert TokenCipher([NEW]).decrypt(both.rotate(written_before)) == "ya29.secret"


@pytest.mark.parametrize("stored", [b"", None, b"garbage", b"gAAAAAtruncated", b"ya29.raw"])
def test_garbage_and_foreign_tokens_are_unreadable_and_never_echoed(stored: bytes | None) -> None:
    """Whatever is stored, decrypt() raises TokenUnreadable whose message holds no token."""
    with pytest.raises(TokenUnreadable) as caught:
        TokenCipher([NEW]).decrypt(stored)
    assert "ya29" not in str(caught.value) and "garbage" not in str(caught.value)


def test_a_malformed_key_names_the_variable_but_not_the_value() -> None:
    """CALENDAR_TOKEN_KEYS with a key that is not Fernet: SettingsError naming the position only."""
    with pytest.raises(SettingsError, match="key 2 is not a Fernet key") as caught:
        TokenCipher.from_settings(Settings.load({"CALENDAR_TOKEN_KEYS": f"{NEW},not-a-key-s3cret"}).calendar)
    assert "s3cret" not in str(caught.value)
    assert TokenCipher.from_settings(Settings.load({}).calendar) is None
    assert TokenCipher([NEW]).primary_key_id == key_id(NEW) != key_id(OLD)


async def test_the_sql_function_refuses_raw_tokens_and_another_users_connection(res: Resources) -> None:
    """calendar_store_connection() takes Fernet tokens only, and will not move a connection to
    another user; storing again re-activates the connection and resets its failures."""
    cipher = TokenCipher([NEW])
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await res.db.execute("SELECT calendar_store_connection('c1', 'o', 'u1', 'primary', $1, $2, $3)",
                             b"ya29.raw-token", cipher.encrypt("r"), LATER)
    assert await res.db.fetchval("SELECT count(*) FROM calendar_connections") == 0
    new = NewConnection("c1", "o", "u1", "ya29.a", "1//r", LATER)
    await connections.store(res.db, cipher, new)
    await res.db.execute("UPDATE calendar_connections SET status = 'INACTIVE', consecutive_failures = 5")
    await connections.store(res.db, cipher, new)
    row = await res.db.fetchrow("SELECT status, consecutive_failures, token_key_id FROM calendar_connections")
    assert row is not None and tuple(row) == ("ACTIVE", 0, key_id(NEW))
    with pytest.raises(ConnectionRefused):
        await connections.store(res.db, cipher, NewConnection("c1", "o", "intruder", "a", "r", LATER))
