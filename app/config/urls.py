"""Connection URLs: checked without ever echoing them (they may hold a password), and redacted
for logs and endpoints; and the Sentinel URL, which names the sentinels to ask for a primary
rather than a server to connect to."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit


def check_url(value: str | None, schemes: tuple[str, ...], example: str) -> str | None:
    """A URL with one of `schemes` and a host (or a socket path); the message never echoes it,
    since it may hold a password."""
    if value is None:
        return None
    if is_sentinel_url(value) and value.partition("://")[0] in schemes:
        parse_sentinel_url(value)  # several hosts, which urlsplit does not take
        return value
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
_SECRET_PARAMS = {"password", "sslpassword", "sentinel_password", "sslkey", "passfile", "token", "secret",
                  "access_token", "auth"}


def redact_url(url: str | None) -> str | None:
    """A connection URL fit for logs and endpoints: every credential replaced by ***.

    Covers the userinfo password and query parameters such as `?password=` and `sslpassword=`;
    a URL that cannot be parsed is hidden whole rather than shown."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
        if parts.scheme in SENTINEL_SCHEMES:
            parse_sentinel_url(url)  # several hosts: urlsplit's port would not parse
        else:
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


SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_EXAMPLE = "redis+sentinel://:password@sentinel-1:26379,sentinel-2:26379/mymaster/0"
DEFAULT_SENTINEL_PORT = 26379

# Query parameters a Sentinel URL may carry: the sentinels' own credentials, and TLS files and
# checks (redis-py's names), which apply to the sentinels and the primary alike.
_SENTINEL_PARAMS = {"sentinel_username", "sentinel_password"}
_TLS_PARAMS = {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"}


@dataclass(frozen=True)
class SentinelAddress:
    """Where a Sentinel-managed primary is found: `redis+sentinel://[user:password@]host[:port],...
    /<master name>[/<db>][?sentinel_password=...&ssl_ca_certs=...]`; `rediss+sentinel://` speaks
    TLS to the sentinels and to the primary. The userinfo is the primary's credentials."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_options: dict[str, str] = field(default_factory=dict)


def is_sentinel_url(url: str) -> bool:
    return url.startswith(tuple(s + "://" for s in SENTINEL_SCHEMES))


def parse_sentinel_url(url: str) -> SentinelAddress:
    """The URL's parts; ValueError naming what is wrong, never echoing the URL."""
    scheme, sep, rest = url.partition("://")
    if scheme not in SENTINEL_SCHEMES or not sep:
        raise ValueError(f"not a Sentinel URL; expected e.g. {SENTINEL_EXAMPLE}")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(h) for h in hosts.split(","))
    names = [unquote(p) for p in path.split("/")] if path else []
    if not names or not names[0]:
        raise ValueError(f"no master name after the sentinels; expected e.g. {SENTINEL_EXAMPLE}")
    if len(names) > 2 or (len(names) == 2 and not names[1].isdigit()):
        raise ValueError(f"the path is /<master name>[/<db number>]; e.g. {SENTINEL_EXAMPLE}")
    params = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(params) - _SENTINEL_PARAMS - _TLS_PARAMS)
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; a Sentinel URL takes "
                         f"{', '.join(sorted(_SENTINEL_PARAMS | _TLS_PARAMS))}")
    tls_options = {k: v for k, v in params.items() if k in _TLS_PARAMS}
    if tls_options and scheme != "rediss+sentinel":
        raise ValueError(f"{', '.join(sorted(tls_options))} need rediss+sentinel:// (TLS)")
    return SentinelAddress(
        sentinels=sentinels, master=names[0], db=int(names[1]) if len(names) == 2 else 0,
        username=username, password=password, sentinel_username=params.get("sentinel_username") or None,
        sentinel_password=params.get("sentinel_password"), tls=scheme == "rediss+sentinel",
        tls_options=tls_options)


def _host_port(text: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port`; the port defaults to Sentinel's 26379."""
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise ValueError(f"a sentinel's IPv6 address is written [address]:port; e.g. {SENTINEL_EXAMPLE}")
        port = port[1:]
    else:
        host, _, port = text.partition(":")
    if not host:
        raise ValueError(f"a sentinel without a host; expected e.g. {SENTINEL_EXAMPLE}")
    if not port:
        return host, DEFAULT_SENTINEL_PORT
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"a sentinel's port must be a number from 1 to 65535; e.g. {SENTINEL_EXAMPLE}")
    return host, int(port)
