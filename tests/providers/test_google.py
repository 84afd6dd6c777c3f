"""Google's answers (app/providers/google.py) mapped onto the error tree, as a table: rate limits,
server errors and unreadable bodies, and the classes of their own (401, 410, invalid_grant)."""

from __future__ import annotations

import pytest

from app.errors import PermanentError, RateLimited, TransientError
from app.providers.google import InvalidGrant, SyncTokenGone, Unauthorized, translate


@pytest.mark.parametrize(("status", "headers", "body", "error", "retry_after"), [
    (429, {"Retry-After": "120"}, "", RateLimited, 120.0),
    (403, {}, '{"error": {"errors": [{"reason": "rateLimitExceeded"}]}}', RateLimited, None),
    (403, {}, '{"error": {"errors": [{"reason": "userRateLimitExceeded"}]}}', RateLimited, None),
    (403, {}, '{"error": {"errors": [{"reason": "forbidden"}]}}', PermanentError, None),
    (500, {}, "", TransientError, None),
    (503, {}, "<html>down</html>", TransientError, None),
    (200, {}, "<html>captive portal</html>", TransientError, None),
    (200, {}, '{"items": [', TransientError, None),
    (200, {}, "[]", TransientError, None),
    (401, {}, "", Unauthorized, None),
    (410, {}, "", SyncTokenGone, None),
    (400, {}, '{"error": "invalid_grant"}', InvalidGrant, None),
    (400, {}, '{"error": "invalid_request"}', PermanentError, None),
])
def test_google_answers_map_onto_the_error_tree(status: int, headers: dict[str, str], body: str,
                                                error: type[Exception], retry_after: float | None) -> None:
    """Rate limits (429, 403 rateLimitExceeded) carry Retry-After; 5xx and anything unreadable
    are transient; 401, 410 and invalid_grant have their own permanent classes."""
    with pytest.raises(error) as caught:
        translate(status, headers, body)
    assert type(caught.value) is error
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after_s == retry_after
