"""Connection URLs: checked without ever echoing them (they may hold a password), and redacted
for logs and endpoints."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


def check_url(value: str | None, schemes: tuple[str, ...], example: str) -> str | None:
    """A URL with one of `schemes` and a host (or a socket path); the message never echoes it,
    since it may hold a password."""
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  # raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError(f"not a URL; expected e.g. {example}") from None
    if parts.scheme not in schemes:
        raise ValueError(f"scheme must be one of {', '.join(s + '://' for s in schemes)}; e.g. {example}")
    if not (parts.hostname or parts.path):
        raise ValueError(f"no host; expected e.g. {example}")
    return value


# Query parameters of a DSN that carry a secret (libpq's and redis-py's names).
_SECRET_PARAMS = {"password", "sslpassword", "sslkey", "passfile", "token", "secret", "access_token", "auth"}


def redact_url(url: str | None) -> str | None:
    """A connection URL fit for logs and endpoints: every credential replaced by ***.

    Covers the userinfo password and query parameters such as `?password=` and `sslpassword=`;
    a URL that cannot be parsed is hidden whole rather than shown."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
        parts.port  # noqa: B018  # raises ValueError on a port that is not a number
    except ValueError:
        return "***"
    # Rebuilt by hand, not with urlunsplit: it would drop the `//` of unix:///path, and the host
    # part ([::1]:6379) and the other query parameters are shown exactly as written.
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    params = [p.partition("=") for p in parts.query.split("&")] if parts.query else []
    query = "&".join(k + sep + ("***" if unquote(k).lower() in _SECRET_PARAMS else v) for k, sep, v in params)
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
