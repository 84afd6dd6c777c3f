"""`python -m app.trigger` fed what goes wrong in practice: an unknown queue, and payloads that are
deep, huge, malformed or NUL-bearing, on the command line or standard input. Each is refused in
one line naming the problem, exit 2, with nothing enqueued and no traceback."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable

import pytest

from app.config import PROJECT_ROOT
from app.queue.payload import MAX_DEPTH, MAX_PAYLOAD_BYTES
from tests.support.worker import one_error_line, run_command, subprocess_env

EnvFactory = Callable[..., dict[str, str]]


async def test_ping_on_an_unknown_queue_is_one_line_and_exit_2(make_env: EnvFactory) -> None:
    """`python -m app.trigger ping --queue nope` names the queue and the known ones."""
    code, _, err = await run_command(make_env(), "app.trigger", "ping", "--queue", "nope")
    line = one_error_line(err)
    assert code == 2 and "unknown queue 'nope'" in line and "sla-monitor" in line


@pytest.mark.parametrize(("payload", "says"), [
    ("[" * 300 + "]" * 300, f"nested deeper than {MAX_DEPTH} levels"),
    ("[" * 5000 + "]" * 5000, f"nested deeper than {MAX_DEPTH} levels"),
    ('{"a":' * 5000 + "1" + "}" * 5000, f"nested deeper than {MAX_DEPTH} levels"),
    ("[" * 100_000, f"nested deeper than {MAX_DEPTH} levels"),
    ('{"note": "' + "x" * 120_000 + '"}', "note"),
    ('{"note": ', "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"sleepMs": "\\u0000"}', "sleepMs"),
    ('{"note": "\\ud800"}', "note: not valid Unicode"),
])
async def test_deep_huge_malformed_and_nul_payloads_are_refused_in_one_line(
        make_env: EnvFactory, payload: str, says: str) -> None:
    """Over-deep (300, 5000 levels, unclosed), long, malformed, non-object and NUL or lone
    surrogate bearing --json: one line naming the problem, exit 2, nothing enqueued."""
    code, out, err = await run_command(make_env(), "app.trigger", "ping", "--queue", "sla-monitor", "--json", payload)
    line = one_error_line(err)
    assert code == 2 and says in line, line
    assert out == ""


def test_payloads_over_the_size_limit_are_refused_naming_it() -> None:
    """A command line holds at most 128 KiB per argument (Linux), below MAX_PAYLOAD_BYTES, so the
    size limit is checked where payloads arrive whole: loads_limited and check_limits."""
    from app.errors import InvalidPayload
    from app.queue.payload import check_limits, loads_limited

    big = json.dumps({"blob": "x" * MAX_PAYLOAD_BYTES})
    with pytest.raises(InvalidPayload, match=f"more than {MAX_PAYLOAD_BYTES} bytes"):
        loads_limited("ping", big)
    with pytest.raises(InvalidPayload, match=f"at most {MAX_PAYLOAD_BYTES} are accepted"):
        check_limits("ping", {"items": ["y" * 1000] * 1100})


async def test_a_payload_over_the_size_limit_on_standard_input_is_one_line(make_env: EnvFactory) -> None:
    """`--json -` reads the payload from standard input (a command line cannot carry 1 MB): more
    than MAX_PAYLOAD_BYTES is refused naming the limit, exit 2, nothing enqueued."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.trigger", "ping", "--queue", "sla-monitor", "--json", "-",
        env=subprocess_env(make_env()), cwd=PROJECT_ROOT, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    body = b'{"note": "' + b"x" * 1_100_000 + b'"}'
    async with asyncio.timeout(60):
        out, err = await proc.communicate(body)
    assert proc.returncode == 2 and out == b""
    assert "more than 1000000 bytes" in one_error_line(err.decode())
