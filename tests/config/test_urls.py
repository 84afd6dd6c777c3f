"""Connection URLs as the runbooks write them: their credentials (in the userinfo or the query
string) never reach a log line or an endpoint, and what is not secret is shown as written."""

from __future__ import annotations

import pytest

from app.config import redact_url


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:hunter2@db:5432/x", "postgresql://u:***@db:5432/x"),
    ("postgresql://u@db/x?password=hunter2", "postgresql://u@db/x?password=***"),
    ("postgresql://u@db/x?sslmode=verify-full&sslpassword=hunter2",
     "postgresql://u@db/x?sslmode=verify-full&sslpassword=***"),
    ("postgresql://db/x?PASSWORD=hunter2&application_name=w", "postgresql://db/x?PASSWORD=***&application_name=w"),
    ("postgresql://u:p%40ss@db/x?passfile=/secret/hunter2", "postgresql://u:***@db/x?passfile=***"),
    ("postgresql://db/x?sslkey=/keys/hunter2.key", "postgresql://db/x?sslkey=***"),
    ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
    ("rediss://user:hunter2@cache:6380/1?ssl_ca_certs=/etc/ca.pem",
     "rediss://user:***@cache:6380/1?ssl_ca_certs=/etc/ca.pem"),
    ("redis://cache:6379/0?password=hunter2", "redis://cache:6379/0?password=***"),
    ("redis://cache/0?password=a&password=hunter2", "redis://cache/0?password=***&password=***"),
    ("unix:///run/redis.sock?password=hunter2", "unix:///run/redis.sock?password=***"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("postgresql://u:hunter2@[::1", "***"),
    ("redis://u:hunter2@h:notaport/0", "***"),
    (None, None), ("", ""),
])
def test_redact_url_hides_every_credential(url: str | None, shown: str | None) -> None:
    """The userinfo password and secret query parameters (password, sslpassword, passfile,
    sslkey, any case) become ***; a URL that does not parse is hidden whole."""
    assert redact_url(url) == shown
    assert "hunter2" not in (redact_url(url) or "")


def test_redact_url_keeps_what_is_not_secret_as_written() -> None:
    """Socket paths keep their `unix:///`, IPv6 hosts their brackets, other parameters their
    spelling: the redacted URL still says where the process connects."""
    assert redact_url("redis://:hunter2@[::1]:6379/0") == "redis://:***@[::1]:6379/0"
    assert redact_url("unix:///run/redis.sock?db=2") == "unix:///run/redis.sock?db=2"
    assert redact_url("postgresql://u@/db?host=/run/pg%20x&password=hunter2") == (
        "postgresql://u@/db?host=/run/pg%20x&password=***")
