"""OAuth tokens encrypted at rest: Fernet with rotation, so a raw token never reaches the database.

Keys come from CALENDAR_TOKEN_KEYS, comma-separated Fernet keys (32 url-safe base64 bytes):
the first encrypts, every one decrypts (cryptography's MultiFernet). Rotation is: put a new key
first, run `workhorse calendar rotate-key` (re-encrypts every row under the first key), drop
the old key. A stored value is the Fernet token's ASCII text as bytea, so any language with a
Fernet implementation (Node's `fernet` package, for one) can write it; README.md shows how.

`key_id()` names a key without revealing it (the first 16 hex digits of SHA-256 of the key
text); rows carry the id of the key that encrypted them, so rotation finds what is left.
"""

from __future__ import annotations

import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.config import SettingsError
from app.config.features import CalendarSettings
from app.errors import PermanentError

FERNET_PREFIX = b"gAAAAA"
"""How every Fernet token starts (version byte 0x80, base64): the SQL function checks it too."""


class TokenUnreadable(PermanentError):
    """A stored token that none of the configured keys decrypts (wrong key, or not a token)."""


def key_id(key: str) -> str:
    """A stable, non-secret name for one key."""
    return hashlib.sha256(key.strip().encode()).hexdigest()[:16]


class TokenCipher:
    """Encrypts under the first key; decrypts under any of them."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise SettingsError("invalid setting CALENDAR_TOKEN_KEYS: no key given")
        fernets: list[Fernet] = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode()))
            except (ValueError, TypeError):
                # Never echo the value: it is a secret.
                raise SettingsError(
                    f"invalid setting CALENDAR_TOKEN_KEYS: key {position} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes)") from None
        self._multi = MultiFernet(fernets)
        self.primary_key_id = key_id(keys[0])
        self.key_ids = tuple(key_id(k) for k in keys)

    @classmethod
    def from_settings(cls, settings: CalendarSettings) -> TokenCipher | None:
        """None when CALENDAR_TOKEN_KEYS is unset; SettingsError when a key is malformed."""
        if not settings.token_keys:
            return None
        return cls([k.get_secret_value() for k in settings.token_keys])

    def encrypt(self, token: str) -> bytes:
        return self._multi.encrypt(token.encode())

    def decrypt(self, stored: bytes | None, *, what: str = "token") -> str:
        """The raw token; TokenUnreadable when no key opens it (the message never holds it)."""
        if not stored:
            raise TokenUnreadable(f"no {what} is stored")
        try:
            return self._multi.decrypt(bytes(stored)).decode()
        except (InvalidToken, UnicodeDecodeError, TypeError, ValueError):
            raise TokenUnreadable(f"the stored {what} cannot be decrypted with CALENDAR_TOKEN_KEYS") from None

    def rotate(self, stored: bytes) -> bytes:
        """The same token encrypted under the first key; TokenUnreadable when no key opens it."""
        try:
            return self._multi.rotate(bytes(stored))
        except (InvalidToken, TypeError, ValueError):
            raise TokenUnreadable("a stored token cannot be decrypted with CALENDAR_TOKEN_KEYS") from None
