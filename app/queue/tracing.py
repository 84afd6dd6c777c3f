"""Tracing of jobs with OpenTelemetry (optional): each job runs in a CONSUMER span that continues
the trace of whoever enqueued it, exported over OTLP/HTTP.

The enqueuer's context travels in the job record as W3C `traceparent`, the one keyword argument
a record may carry (`"k": {"traceparent": "00-…"}`, allowed by `codec.job_shape_problem`); arq
hands it to the job's `run(ctx, payload, traceparent=…)`.

Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT is set: the worker process calls `start()` and,
when it stops, `stop()`, which flushes the spans still batched. We build a TracerProvider of our
own rather than OpenTelemetry's global one, which can be set only once per interpreter (tests
start several workers in one). Off, OpenTelemetry is never imported, and the engine's hooks cost
one `if tracing.active is not None` each. Other OTEL_* variables (headers, timeout, compression,
sampler, resource attributes) are read by the OpenTelemetry SDK itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from app.config import SettingsError
from app.config.services import OtelSettings
from app.queue.retries import RetryLater

if TYPE_CHECKING:
    from opentelemetry.trace import Span

T = TypeVar("T")

TRACEPARENT = "traceparent"
"""The only key a job record's keyword arguments may hold."""
# Version 00 is 55 characters; later versions may append fields. Anything longer is not one.
MAX_TRACEPARENT_CHARS = 256
TRACES_PATH = "/v1/traces"
"""OTLP/HTTP's path for spans, appended to OTEL_EXPORTER_OTLP_ENDPOINT as the specification says."""

# Span attributes: OpenTelemetry's messaging conventions where they fit, ours for the rest.
ATTR_SYSTEM = "messaging.system"
ATTR_OPERATION = "messaging.operation.type"
ATTR_QUEUE = "messaging.destination.name"
ATTR_JOB_ID = "messaging.message.id"
ATTR_JOB = "workhorse.job.name"
ATTR_ATTEMPT = "workhorse.job.attempt"
ATTR_OUTCOME = "workhorse.job.outcome"
"""completed, skipped, retried, dead_lettered or cancelled."""

active: JobTracer | None = None
"""The tracer of this process while tracing is on, else None."""


def start(settings: OtelSettings) -> None:
    """Turn tracing on when OTEL_EXPORTER_OTLP_ENDPOINT is set; a no-op otherwise."""
    global active
    endpoint = settings.exporter_otlp_endpoint
    if not endpoint or active is not None:
        return
    active = JobTracer(endpoint, settings.service_name)


def stop() -> None:
    """Export the spans still batched and turn tracing off. Blocks while exporting: call it with
    `asyncio.to_thread` from a loop (the collector may be served by that very loop)."""
    global active
    tracer, active = active, None
    if tracer is not None:
        tracer.shutdown()


def traces_url(endpoint: str) -> str:
    return endpoint.rstrip("/") + TRACES_PATH


def is_trace_kwargs(kwargs: object) -> bool:
    """Whether a record's keyword arguments are the one form allowed besides {}: a traceparent.
    Its content is not checked: an invalid one is ignored when the job runs (a new trace starts)."""
    return (isinstance(kwargs, dict) and kwargs.keys() == {TRACEPARENT}
            and isinstance(kwargs[TRACEPARENT], str) and len(kwargs[TRACEPARENT]) <= MAX_TRACEPARENT_CHARS)


class JobTracer:
    """The OpenTelemetry side, built only when tracing is on (so only then imported)."""

    def __init__(self, endpoint: str, service_name: str) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError as exc:
            raise SettingsError(
                "invalid setting OTEL_EXPORTER_OTLP_ENDPOINT: tracing needs OpenTelemetry "
                f"(pip install 'workhorse[otel]'): {exc}") from None
        # shutdown_on_exit=False: stop() shuts it down with the process, exactly once.
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                                       shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
        self.tracer = self.provider.get_tracer(__name__)
        self.propagator = TraceContextTextMapPropagator()

    def job_kwargs(self) -> dict[str, str]:
        """A new job record's keyword arguments: the current trace context, or {} outside a span."""
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier)
        found = carrier.get(TRACEPARENT)
        return {TRACEPARENT: found} if found else {}

    async def run_job(self, job: Awaitable[T], *, name: str, queue: str, job_id: str, attempt: int,
                      traceparent: str | None) -> T:
        """Await `job` (the engine's wrapper, which returns or raises RetryLater, DeadLettered or
        CancelledError) in a span `job <name>`, a child of the enqueuer's span when it sent one."""
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind

        parent = self.propagator.extract({TRACEPARENT: traceparent}, context=Context()) if traceparent else Context()
        attributes: dict[str, str | int] = {ATTR_SYSTEM: "arq", ATTR_OPERATION: "process", ATTR_QUEUE: queue,
                                            ATTR_JOB_ID: job_id, ATTR_JOB: name, ATTR_ATTEMPT: attempt}
        with self.tracer.start_as_current_span(f"job {name}", context=parent, kind=SpanKind.CONSUMER,
                                               attributes=attributes, record_exception=False,
                                               set_status_on_exception=False) as span:
            try:
                result = await job
            except BaseException as exc:
                _record_failure(span, exc)
                raise
            skipped = isinstance(result, dict) and result.get("status") == "skipped"
            span.set_attribute(ATTR_OUTCOME, "skipped" if skipped else "completed")
            return result

    def shutdown(self) -> None:
        self.provider.shutdown()  # flushes the batch processor, then stops its thread


def _record_failure(span: Span, exc: BaseException) -> None:
    """The outcome of an attempt that raised; a failed one gets status ERROR and the job's error."""
    from opentelemetry.trace import Status, StatusCode

    if isinstance(exc, asyncio.CancelledError):
        span.set_attribute(ATTR_OUTCOME, "cancelled")
        return
    span.set_attribute(ATTR_OUTCOME, "retried" if isinstance(exc, RetryLater) else "dead_lettered")
    cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
    span.record_exception(cause)
    span.set_status(Status(StatusCode.ERROR, f"{type(cause).__name__}: {cause}"))
