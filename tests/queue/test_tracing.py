"""Tracing: with OTEL_EXPORTER_OTLP_ENDPOINT set, each job is a CONSUMER span in the trace of whoever
enqueued it (W3C traceparent carried in the job record), exported over OTLP/HTTP to a receiver
on 127.0.0.1; without it, records carry nothing and no span is made."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer, format_span_id, format_trace_id

from app.config import Settings
from app.jobs.resources import Resources
from app.queue import codec, keys, tracing
from app.queue.enqueue import JobRequest
from app.queue.replies import octets
from tests.fakes.otlp import OtlpReceiver, ReceivedSpan
from tests.support.worker import in_process_worker

QUEUE = "sla-monitor"
CONSUMER = 5  # opentelemetry.proto Span.SpanKind
STATUS_ERROR = 2  # opentelemetry.proto Status.StatusCode


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    """An OTLP/HTTP trace receiver (a collector's imitation) on 127.0.0.1."""
    fake = OtlpReceiver()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def web_app_tracer() -> Tracer:
    """The enqueuer's own tracing (say the web app's): a provider of its own, exporting nowhere."""
    return TracerProvider().get_tracer("web-app")


def job_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.name.startswith("job ")]


async def test_each_job_is_a_span_in_the_enqueuers_trace(
        make_settings: Callable[..., Settings], res: Resources, receiver: OtlpReceiver,
        web_app_tracer: Tracer) -> None:
    """Three jobs enqueued inside one span arrive at the collector as three CONSUMER spans
    `job ping`, children of that span in its trace, with queue, job id, attempt and outcome."""
    settings = make_settings(otel_exporter_otlp_endpoint=receiver.endpoint, otel_service_name="workhorse-test")
    async with in_process_worker(settings, [QUEUE]):
        with web_app_tracer.start_as_current_span("POST /intake") as request_span:
            enqueued = await res.enqueuer.enqueue_many(
                [JobRequest("ping", {"note": str(i)}, queue=QUEUE) for i in range(3)])
        for e in enqueued:
            assert e is not None
            await res.enqueuer.job(e.job_id, QUEUE).result(timeout_s=10, poll_delay=0.02)
    # The worker flushed its spans when it stopped.
    spans = job_spans(await receiver.wait_for_spans(3))
    context = request_span.get_span_context()
    assert len(spans) == 3
    assert {s.trace_id for s in spans} == {format_trace_id(context.trace_id)}
    assert {s.parent_span_id for s in spans} == {format_span_id(context.span_id)}
    assert {s.attributes["messaging.message.id"] for s in spans} == {e.job_id for e in enqueued if e}
    for s in spans:
        assert (s.name, s.kind) == ("job ping", CONSUMER)
        assert s.attributes["messaging.destination.name"] == QUEUE
        assert s.attributes["workhorse.job.name"] == "ping"
        assert s.attributes["workhorse.job.attempt"] == 1
        assert s.attributes["workhorse.job.outcome"] == "completed"
        assert s.resource["service.name"] == "workhorse-test"
    assert tracing.active is None  # off again once the process stopped


async def test_a_dead_lettered_job_span_says_so_with_status_error(
        make_settings: Callable[..., Settings], res: Resources, receiver: OtlpReceiver) -> None:
    """A job that fails for good ends its span with outcome dead_lettered and status ERROR; a job
    enqueued outside any span starts a trace of its own."""
    settings = make_settings(otel_exporter_otlp_endpoint=receiver.endpoint)
    async with in_process_worker(settings, [QUEUE]):
        await res.enqueuer.enqueue("probe", {"tag": "t", "failTimes": 1, "error": "permanent"}, queue=QUEUE)
        await receiver.wait_for_spans(1)  # the batch goes out within its schedule delay
    [span] = job_spans(receiver.spans)
    assert span.attributes["workhorse.job.outcome"] == "dead_lettered"
    assert span.status_code == STATUS_ERROR
    assert span.parent_span_id == ""


async def test_without_an_endpoint_records_carry_no_trace_context(
        settings: Settings, res: Resources, web_app_tracer: Tracer) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT unset, tracing stays off: a job enqueued inside a span is
    stored with empty keyword arguments, exactly as arq writes it."""
    async with in_process_worker(settings, [QUEUE]):
        assert tracing.active is None
        with web_app_tracer.start_as_current_span("POST /intake"):
            enqueued = await res.enqueuer.enqueue("ping", {}, queue=QUEUE, defer_s=60)
        assert enqueued is not None
        record = codec.loads(octets(await res.redis.get(keys.JOB_PREFIX + enqueued.job_id) or b""))
    assert record["k"] == {}


@pytest.mark.parametrize(
    ("kwargs", "accepted"),
    [
        ({}, True),
        (None, True),
        ({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, True),
        ({"traceparent": "not-a-traceparent"}, True),  # ignored when the job runs: a new trace starts
        ({"traceparent": 1}, False),
        ({"traceparent": "00-" + "a" * 300}, False),
        ({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "note": "x"}, False),
        ({"tracestate": "k=v"}, False),
    ],
)
def test_a_record_may_carry_only_a_traceparent_as_keyword_argument(kwargs: object, accepted: bool) -> None:
    """A job record's `k` is empty or holds one traceparent string; anything else is malformed."""
    record = {"t": None, "f": "ping", "a": [{}], "k": kwargs, "et": 1}
    problem = codec.job_shape_problem(record)
    assert (problem is None) is accepted, problem
    if not accepted:
        assert problem is not None and "'k'" in problem
