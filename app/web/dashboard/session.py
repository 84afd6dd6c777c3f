"""Dashboard sessions: an HMAC-signed cookie naming the API token's label, and CSRF tokens tied to it.

The cookie never holds a token. Its signing key is derived from every configured token, so all
processes behind one address accept each other's sessions, and changing API_TOKEN ends every
session. Whether a session may act is read from the configuration on each request (the token
named by the label), never from the cookie. Sessions are stateless: logout deletes the cookie
and a stolen cookie works until it expires (SESSION_TTL_S), which SameSite=Strict and HttpOnly
make hard to steal in the first place.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from app.web.auth import ApiToken

COOKIE_NAME = "workhorse_session"
SESSION_TTL_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who looks at the dashboard: a session's token label (None without tokens) and what it may do."""

    label: str | None
    can_act: bool
    nonce: str = ""
    """The session's random part; CSRF tokens are derived from it."""


def signing_key(tokens: tuple[ApiToken, ...]) -> bytes:
    """The key sessions are signed with, derived from every configured token."""
    material = "\n".join(t.secret.get_secret_value() for t in tokens)
    return hashlib.sha256(b"workhorse-dashboard-session\n" + material.encode()).digest()


def _sign(key: bytes, body: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode().rstrip("=")


def issue(key: bytes, token: ApiToken, *, now: float | None = None) -> str:
    """A cookie value for a login with `token`: label, nonce and expiry, signed."""
    expires = int((time.time() if now is None else now) + SESSION_TTL_S)
    body = json.dumps({"l": token.label, "n": secrets.token_urlsafe(16), "e": expires}, separators=(",", ":"))
    encoded = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
    return f"{encoded}.{_sign(key, encoded.encode())}"


def read(key: bytes, tokens: tuple[ApiToken, ...], cookie: str | None, *, now: float | None = None) -> Viewer | None:
    """The viewer a cookie stands for, or None: unsigned, tampered, expired, or its token is gone."""
    if not cookie or "." not in cookie:
        return None
    encoded, _, signature = cookie.partition(".")
    if not hmac.compare_digest(signature.encode(), _sign(key, encoded.encode()).encode()):
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        label, nonce, expires = str(body["l"]), str(body["n"]), int(body["e"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires < (time.time() if now is None else now):
        return None
    token = next((t for t in tokens if t.label == label), None)
    if token is None:
        return None
    return Viewer(label, can_act=not token.read_only, nonce=nonce)


def csrf_token(key: bytes, viewer: Viewer) -> str:
    """The CSRF token of a session: forms carry it, actions compare it."""
    return _sign(key, f"csrf:{viewer.nonce}".encode())


def csrf_ok(key: bytes, viewer: Viewer, presented: str | None) -> bool:
    return bool(presented) and bool(viewer.nonce) and hmac.compare_digest(
        (presented or "").encode(), csrf_token(key, viewer).encode())
