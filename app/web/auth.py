"""Who may use the HTTP API and the dashboard: bearer tokens from API_TOKEN, compared in
constant time. Several tokens may be configured; one written `ro:TOKEN` may only read.

Without any token the API is off (it answers 404 with a sentence saying so) and the dashboard
is read-only; health and metrics never need a token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from pydantic import SecretStr


@dataclass(frozen=True, slots=True)
class ApiToken:
    label: str
    """How logs name the token: its position, never its value."""
    secret: SecretStr
    read_only: bool


def parse_tokens(configured: list[SecretStr]) -> tuple[ApiToken, ...]:
    """API_TOKEN's tokens; `ro:` before a token makes it read-only."""
    tokens = []
    for n, item in enumerate(t.get_secret_value() for t in configured):
        read_only = item.startswith("ro:")
        value = item[3:] if read_only else item
        if value:
            tokens.append(ApiToken(f"token-{n + 1}", SecretStr(value), read_only))
    return tuple(tokens)


def authenticate(tokens: tuple[ApiToken, ...], presented: str | None) -> ApiToken | None:
    """The token `presented` matches, or None. Every configured token is compared (in constant
    time each), so timing tells nothing about which or how much matched."""
    if not presented:
        return None
    found = None
    given = presented.encode()
    for token in tokens:
        if hmac.compare_digest(given, token.secret.get_secret_value().encode()):
            found = token
    return found


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
