"""The logger aiohttp's server writes to for the sidecar, where a request that could not be parsed is
one INFO line and a handler's failure stays an ERROR with its traceback.

aiohttp (3.14) answers a request it cannot parse with 400 and logs it through its server logger as
`Error handling request from ADDRESS`, at ERROR with a traceback of its own parser
(web_protocol.RequestHandler.handle_error). Anyone who can connect can send one (a 100 KB
header, a NUL in the request line, TLS to the plain port), so at ERROR it would page whoever
watches the log for nothing the process did wrong. The sidecar's runner is given SERVER_LOG
instead of `aiohttp.server` (its `logger=` argument), and a filter on it rewrites those records:
event `sidecar_request_malformed`, the client's address and the parser's reason on one line, at
INFO (or at the DEBUG aiohttp chose for TLS sent to the plain port). Records of any other
exception, which come from a handler, pass as aiohttp wrote them.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

MALFORMED = "sidecar_request_malformed"
_REASON_MAX_CHARS = 200
"""aiohttp quotes the offending bytes (up to about 100 of them) in its reason; more says nothing new."""


class MalformedRequests(logging.Filter):
    """Turns aiohttp's records of requests its parser refused into one line at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        refused = record.exc_info[1] if record.exc_info else None
        if not isinstance(refused, HttpProcessingError):
            return True  # a handler's exception: ERROR with its traceback, as aiohttp logged it
        level = min(record.levelno, logging.INFO)
        # The logger's level was checked against ERROR; the record now stands for INFO.
        if not logging.getLogger(record.name).isEnabledFor(level):
            return False
        # aiohttp's format is "Error handling request from %s" with the client's address.
        args = record.args if isinstance(record.args, tuple) else ()
        # Fields as `extra=` would set them (app/logs.py renders them beside the event).
        record.__dict__.update(client=str(args[0]) if args else None, status=refused.code,
                               reason=" ".join(refused.message.split())[:_REASON_MAX_CHARS])
        record.msg, record.args = MALFORMED, ()
        record.levelno, record.levelname = level, logging.getLevelName(level)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


SERVER_LOG = logging.getLogger(__name__)
"""The sidecar's aiohttp server logger (app/web/__init__.py gives it to the runner)."""
SERVER_LOG.addFilter(MalformedRequests())
