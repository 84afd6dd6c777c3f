"""What an enqueue writes: the payload limits (a sound size bound, exact at the edge, clean text),
job ids (UUID4, unique, not shared across fork) and the job record (arq's shape, read by arq)."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import struct
import sys
import threading
import uuid
from typing import Any

import pytest

from app.errors import InvalidPayload
from app.jobs.intake import RouteIntake
from app.jobs.ping import Ping
from app.jobs.resources import Resources
from app.jobs.scheduling.payloads import ScheduleMeeting, SchedulingData, SendResponse
from app.queue import codec
from app.queue.ids import new_job_id
from app.queue.payload import MAX_DEPTH, MAX_PAYLOAD_BYTES, Payload, _walk, check_limits
from tests.support.records import arq_record

JOB = "probe"
# Every kind of character JSON writes differently: escaped controls (6 bytes), two-byte escapes,
# plain ASCII, 2-, 3- and 4-byte UTF-8, DEL and the line separators json leaves as they are.
_CHARS = ([chr(c) for c in range(1, 0x20)] + list('"\\/ aZ09~\x7f') + ["é", "ß", "漢", "字", "\u2028", "\uffff"]
          + [chr(c) for c in (0x1F600, 0x1F680, 0x10FFFF)])
_INTS = [0, 1, -1, 9, -10, 2**63, -(2**63), 2**128 - 1, -(2**128 - 1), 2**128, 2**200, -(2**200)]
_FLOATS = [0.0, -0.0, 0.1, -1.7976931348623157e308, 1.7976931348623157e308, 5e-324, -2.2250738585072014e-308,
           -0.00012345678901234567, 1e16, -1234567890123456.7, float("nan"), float("inf"), float("-inf")]


def _compact_size(data: Any) -> int:
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())


# The worst case per byte: characters JSON escapes to `\u00XX`, negative ints with the most digits for
# their bit length (the powers of ten; all-ones as well), floats with the longest repr, `false`; and
# many short items, so separators count. A bound a byte short for any of them fails on this family.
_WORST_CHARS = [chr(c) for c in range(1, 0x20) if chr(c) not in "\b\t\n\f\r"]
_WORST_INTS = [-(10**k) for k in range(39)] + [-(2**bits - 1) for bits in range(1, 129)]
_WORST_FLOATS = [-1.7976931348623157e308, -2.2250738585072014e-308, -1.2345678901234567e-100]


def _text(rng: random.Random, worst: bool) -> str:
    if worst:
        return "".join(rng.choice(_WORST_CHARS) for _ in range(rng.randint(0, 2)))
    return "".join(rng.choice(_CHARS) for _ in range(rng.choice((0, 1, 3, 12, 40))))


def _scalar(rng: random.Random, worst: bool) -> Any:
    if worst:
        return rng.choice((_text(rng, worst), rng.choice(_WORST_INTS), rng.choice(_WORST_FLOATS), False))
    kind = rng.randrange(6)
    if kind == 0:
        return _text(rng, worst)
    if kind == 1:
        return rng.choice(_INTS) if rng.random() < 0.5 else rng.randint(-(2**100), 2**100) >> rng.randrange(100)
    if kind == 2:  # a named extreme, or any 64-bit pattern (subnormals, NaNs and infinities included)
        return rng.choice(_FLOATS) if rng.random() < 0.5 else struct.unpack("<d", rng.randbytes(8))[0]
    return rng.choice((True, False, None))


def _key(rng: random.Random, worst: bool) -> Any:
    if worst or rng.random() < 0.95:
        return _text(rng, worst)
    return rng.choice((7, -(2**70), None, True, 2.5))  # keys json.dumps converts to strings


def _value(rng: random.Random, depth: int, spine: bool, worst: bool) -> Any:
    """A value at `depth` (the payload is 1); a spine reaches exactly MAX_DEPTH."""
    if depth >= MAX_DEPTH or not (spine or rng.random() < 0.3):
        return _scalar(rng, worst)
    width = rng.randint(0, 4 if depth < 4 else 2)
    items = [_value(rng, depth + 1, False, worst) for _ in range(width)]
    if spine:
        items.insert(rng.randint(0, width), _value(rng, depth + 1, True, worst))
    if rng.random() < 0.5:
        return items
    return {_key(rng, worst): item for item in items}


@pytest.mark.parametrize("worst", [False, True], ids=["mixed", "worst-case"])
def test_walk_bound_is_never_below_the_compact_json_size(worst: bool) -> None:
    """The size bound may only overestimate: a payload it lets through untouched is within limit."""
    rng = random.Random(20240611)
    bounded = 0
    for _ in range(1500):
        width = rng.randint(0, 6)
        payload = {_key(rng, worst): _value(rng, 2, rng.random() < 0.2, worst) for _ in range(width)}
        bound = _walk(JOB, payload)
        if bound is not None:
            bounded += 1
            assert bound >= _compact_size(payload), payload
    assert bounded > 500  # most payloads take the fast path, so the property was tested


@pytest.mark.parametrize("value", [*_WORST_INTS, *_WORST_FLOATS, *_WORST_CHARS, False, True, None, 0, "", [], {}])
def test_walk_bound_holds_for_each_worst_value_repeated(value: Any) -> None:
    """Repeated in a list and under keys escaped to 6 bytes a character (which the bound counts
    exactly), so the one spare separator each container counts cannot hide a byte short per value."""
    payload = {"\x01": [value] * 3, "\x02": {"\x03": value, "\x04": value, "\x05": value}}
    bound = _walk(JOB, payload)
    assert bound is not None and bound >= _compact_size(payload)


@pytest.mark.parametrize("filler", ["x", "é", "漢", "😀"])
def test_exact_size_decides_at_the_limit(filler: str) -> None:
    """MAX_PAYLOAD_BYTES of JSON are accepted, one byte more refused naming the size, whatever the
    bytes per character (for multi-byte text the bound is far over the limit and json.dumps decides)."""
    width = len(filler.encode())
    room = MAX_PAYLOAD_BYTES - _compact_size({"a": ""})
    text = filler * (room // width) + "x" * (room % width)
    exact = {"a": text}
    assert _compact_size(exact) == MAX_PAYLOAD_BYTES
    check_limits(JOB, exact)

    over = {"a": text + "x"}
    with pytest.raises(InvalidPayload) as caught:
        check_limits(JOB, over)
    assert caught.value.problems == {
        "(payload)": f"{MAX_PAYLOAD_BYTES + 1} bytes of JSON; at most {MAX_PAYLOAD_BYTES} are accepted"}


@pytest.mark.parametrize(("payload", "problems"), [
    ({"a": {"b": ["ok", "\ud800"]}}, {"a.b.1": "not valid Unicode (a lone surrogate)"}),
    ({"a": {"b": [{"c\udfffd": 1}]}}, {"a.b.0.c\\udfffd": "field name is not valid Unicode (a lone surrogate)"}),
    ({"a": {"b": [{"x\x00y": 1}]}}, {"a.b.0.x\\x00y": "field name contains a NUL character"}),
    ({"a": {"b": [None, "x\x00"]}}, {"a.b.1": "contains a NUL character"}),
], ids=["surrogate-value", "surrogate-key", "nul-key", "nul-value"])
def test_text_postgresql_cannot_store_is_refused_naming_the_field(
        payload: dict[str, Any], problems: dict[str, str]) -> None:
    """NUL and lone surrogates are refused before the size check, with a printable field path."""
    with pytest.raises(InvalidPayload) as caught:
        check_limits(JOB, payload)
    assert caught.value.problems == problems
    str(caught.value).encode()  # the message itself is valid UTF-8


def test_int_past_the_digit_limit_is_invalid_payload() -> None:
    """An int too long for int-to-str is 'not JSON-serializable', not a ValueError escaping."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(4300)  # Python's default; the test must not depend on the shell
    try:
        huge = 10**5000  # arithmetic, never str()
        with pytest.raises(InvalidPayload) as caught:
            check_limits(JOB, {"a": {"n": [huge]}})
    finally:
        sys.set_int_max_str_digits(limit)
    assert "not JSON-serializable" in caught.value.problems["(payload)"]


def test_job_ids_are_hex_uuid4_and_unique() -> None:
    """Ids read as `uuid.uuid4().hex` would: version 4, RFC 4122 variant, lowercase, no repeats."""
    ids = [new_job_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for job_id in ids:
        assert len(job_id) == 32 and job_id == job_id.lower()
        parsed = uuid.UUID(hex=job_id)
        assert parsed.hex == job_id
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_threads_drawing_ids_at_once_never_share_one() -> None:
    """Eight threads across many batch refills: every id handed out once."""
    drawn: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(len(drawn))

    def draw(into: list[str]) -> None:
        start.wait()
        into.extend(new_job_id() for _ in range(5_000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [job_id for into in drawn for job_id in into]
    assert len(every) == 40_000 and len(set(every)) == len(every)


def test_forked_child_never_draws_the_parents_next_ids() -> None:
    """Fork copies the id buffer; the child must start a fresh one, or both enqueue the same ids."""
    new_job_id()  # the parent's buffer now holds ids it has not handed out yet
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its ids, then leave without running pytest's teardown
        try:
            os.close(read_end)
            os.write(write_end, "".join(new_job_id() for _ in range(64)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    parent_ids = {new_job_id() for _ in range(64)}
    with os.fdopen(read_end, "rb") as pipe:
        raw = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child_ids = {raw[i:i + 32] for i in range(0, len(raw), 32)}
    assert len(child_ids) == 64
    assert not child_ids & parent_ids


TRACEPARENT = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
ENQUEUED_MS = 1_767_225_600_123
_MEETING = SchedulingData(title='Revue « trimestrielle » "Q1" 漢字 😀',
                          start_time=dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC),
                          end_time=dt.datetime(2026, 3, 2, 10, 15, 0, 500_000, tzinfo=dt.UTC),
                          participants=["zoë@example.com"], description="line\nbreak\t\\ \x01")
PAYLOADS: list[tuple[str, Payload]] = [
    ("ping", Ping()),
    ("ping", Ping(sleep_ms=5, note='héllo "quoted" \\ 漢字 😀')),
    ("route_intake", RouteIntake(intake_request_id="ir-1", org_id="org/é", priority="urgent")),
    ("schedule_meeting", ScheduleMeeting(task_id="t1", user_id="u1", scheduling_data=_MEETING,
                                         check_conflicts=False)),
    ("send_response", SendResponse(
        task_id="t2", user_id="u2", response_type="alternatives", channel="webhook",
        metadata={"scores": [0.1, -0.0, 1e300, 5e-324, -1.7976931348623157e308, 1e16, float("inf")],
                  "nested": {"ключ": ['"', "\\", None, True, 2**70]}})),
    ('odd "name" é', Ping(note="x")),
]


@pytest.mark.parametrize("kwargs", [{}, TRACEPARENT], ids=["no-kwargs", "traceparent"])
@pytest.mark.parametrize(("name", "model"), PAYLOADS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(PAYLOADS)])
def test_dump_job_writes_the_record_arq_writes(name: str, model: Payload, kwargs: dict[str, Any]) -> None:
    """The record built from the payload's bytes is the one arq's serialize_job writes for the
    payload (tests/queue/test_arq_protocol.py has arq itself read ours), and the worker's loads_job
    accepts it."""
    record = codec.dump_job(name, model.json_bytes(), kwargs, ENQUEUED_MS)
    assert json.loads(record) == json.loads(arq_record(name, model.to_json(), kwargs=kwargs, enqueued_ms=ENQUEUED_MS))
    assert model.json_bytes() in record  # the payload's own bytes, serialized once
    assert codec.loads_job(record) == json.loads(record)


def test_tuples_are_walked_like_lists() -> None:
    """A Python caller's tuple is written as a JSON list, so it is held to the same rules: a NUL
    inside is refused naming its field, and nesting counts toward the depth limit."""
    with pytest.raises(InvalidPayload, match=r"k\.0"):
        check_limits("j", {"k": ("nul\x00here",)})
    deep: object = "x"
    for _ in range(100_000):
        deep = (deep,)
    with pytest.raises(InvalidPayload, match="nested deeper"):
        check_limits("j", {"a": deep})


@pytest.mark.parametrize("record", [
    b'{"t":null,"f":"ping","a":[{}],"k":{},"et":1}',
    b'{"t":3,"f":"ping","a":[],"et":1,"extra":[1,2]}',  # no k, an extra key
    b'{"t":null,"f":"a","f":"ping","a":[null],"k":null,"et":1}',  # a duplicate key: the last wins
    b'{"t":null,"f":"ping","a":[{"x":NaN,"y":123456789012345678901234567890}],"et":1}',
    b'{"t":null,"f":"ping","a":[{"s":"\\ud800"}],"et":1}',  # a lone surrogate escape
    b'{"t":null,"f":"ping","a":[{}],"k":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},'
    b'"et":1}',
    b'{"t":true,"f":"ping","a":[],"et":1}',
    b'{"t":null,"f":"ping","a":[],"et":1.0}',
    b'{"t":null,"f":"ping","a":[{},{}],"et":1}',
    b'{"t":null,"f":"ping","a":[1],"et":1}',
    b'{"t":null,"f":"ping","a":[],"k":{"other":"x"},"et":1}',
    b'{"f":"ping","a":[],"et":1}',
    b'\x80\x04pickled',
    b'[1]',
])
def test_the_fast_record_decoder_agrees_with_json_and_the_shape_rules(record: bytes) -> None:
    """loads_job's one-pass decode (pydantic-core) gives what json.loads and job_shape_problem
    give: the same fields for a record they accept, NotJson with their message otherwise."""
    try:
        slow: dict[str, Any] | None = codec.loads(record)
        assert slow is not None
        problem = codec.job_shape_problem(slow)
    except codec.NotJson as exc:
        slow, problem = None, str(exc)
    if slow is not None and problem is None:
        fast = codec.loads_job(record)
        assert json.dumps(fast, sort_keys=True) == json.dumps(
            {k: slow[k] for k in ("t", "f", "a", "k", "et") if k in slow}, sort_keys=True)
    else:
        with pytest.raises(codec.NotJson) as refused:
            codec.loads_job(record)
        assert problem is not None and problem in str(refused.value)


async def test_a_payload_model_built_in_python_is_held_to_the_limits_too(res: Resources) -> None:
    """A job enqueueing another with a payload model it built is checked like JSON input: a NUL
    in a field is refused naming it, and nothing is enqueued."""
    before = await res.redis.zcard("intake-routing")
    with pytest.raises(InvalidPayload, match="note"):
        await res.enqueuer.send(Ping(note="nul\x00here"))
    with pytest.raises(InvalidPayload, match="note"):
        await res.enqueuer.enqueue("ping", Ping(note="nul\x00here"), queue="intake-routing")
    assert await res.redis.zcard("intake-routing") == before
