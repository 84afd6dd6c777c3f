"""The job registry: every JobSpec by name, with its effective retry policy and timeout.

A JobSpec names a job, its queue, its payload model and its function. The registry validates
payloads for enqueuers; app/queue/execution.py wraps each spec for the runner.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from app.config.queue_table import QueueTable, RetryPolicy
from app.errors import InvalidPayload, UnknownJob
from app.queue.context import JobContext
from app.queue.payload import Payload, check_limits, parse

P = TypeVar("P", bound=Payload)

ANY_QUEUE = "*"
"""A JobSpec queue that means: whichever queue the enqueuer names (the `ping` probe)."""


@dataclass(frozen=True, slots=True)
class JobSpec(Generic[P]):
    name: str
    queue: str
    payload: type[P]
    run: Callable[[JobContext[Any], P], Awaitable[Any]]
    description: str = ""
    retry: RetryPolicy | None = None
    """Overrides the queue's policy (config/queues.toml [jobs.NAME] overrides both)."""
    timeout_s: float | None = None
    on_dead_letter: Callable[[JobContext[Any], P, BaseException], Awaitable[None]] | None = None
    """Called once the job is dead-lettered (a permanent error, a bug, or its last attempt failed
    or timed out), so it can record the failure on its own rows, e.g. a document FAILED."""
    aliases: tuple[str, ...] = ()
    """Other names enqueuers may use (the web app's kebab-case `process-inbox`); jobs are stored
    and run under `name`."""


class Registry:
    """Every job of the process, by name, with its effective policy and timeout."""

    def __init__(self, specs: Iterable[JobSpec[Any]], table: QueueTable) -> None:
        self.table = table
        self._specs: dict[str, JobSpec[Any]] = {}
        self._aliases: dict[str, str] = {}
        self._by_payload: dict[type[Payload], JobSpec[Any]] = {}
        for spec in specs:
            if spec.name in self._specs or spec.name in self._aliases:
                raise ValueError(f"job {spec.name!r} is registered twice")
            if spec.queue != ANY_QUEUE:
                table.queue(spec.queue)  # fails loudly on a queue the table does not have
            self._specs[spec.name] = spec
            self._by_payload.setdefault(spec.payload, spec)
            for alias in (*spec.aliases, spec.name.replace("_", "-")):
                if alias != spec.name:
                    self._aliases.setdefault(alias, spec.name)

    def __iter__(self) -> Iterator[JobSpec[Any]]:
        return iter(self._specs.values())

    @property
    def default_queue(self) -> str:
        """Where a job that runs on any queue goes when none is named: the table's first queue."""
        return next(iter(self.table.queues))

    def names(self) -> list[str]:
        return list(self._specs)

    def spec(self, name: str) -> JobSpec[Any]:
        """The spec of a job by its name or an alias of it."""
        try:
            return self._specs[self._aliases.get(name, name)]
        except KeyError:
            raise UnknownJob(name, self._specs) from None

    def spec_for(self, payload: Payload) -> JobSpec[Any]:
        """The spec whose payload model `payload` is (one job may enqueue another by model)."""
        try:
            return self._by_payload[type(payload)]
        except KeyError:
            raise UnknownJob(type(payload).__name__, self._specs) from None

    def for_queue(self, queue: str) -> list[JobSpec[Any]]:
        return [s for s in self._specs.values() if s.queue in (queue, ANY_QUEUE)]

    def policy(self, spec: JobSpec[Any], queue: str) -> RetryPolicy:
        override = self.table.jobs.get(spec.name)
        if override and override.retry:
            return override.retry
        return spec.retry or self.table.queue(queue).retry

    def timeout_s(self, spec: JobSpec[Any], queue: str) -> float:
        override = self.table.jobs.get(spec.name)
        if override and override.timeout_s:
            return override.timeout_s
        return spec.timeout_s or self.table.queue(queue).timeout_s

    def validate(self, name: str, payload: Any, queue: str | None = None) -> tuple[JobSpec[Any], Payload, str]:
        """The spec, the parsed payload and the queue to use; raises UnknownJob/InvalidPayload."""
        spec = self.spec(name)
        if isinstance(payload, spec.payload):
            # Built by Python code: its fields were validated, but not held to the limits (a NUL
            # in a str field would reach Redis, then fail in PostgreSQL).
            check_limits(spec.name, payload.to_json())
            parsed = payload
        else:
            parsed = parse(spec.name, spec.payload, payload)
        if spec.queue == ANY_QUEUE:
            if queue is None:
                raise InvalidPayload(name, {"queue": f"{name} runs on any queue: name one"})
            self.table.queue(queue)
            return spec, parsed, queue
        if queue is not None and queue != spec.queue:
            raise InvalidPayload(name, {"queue": f"{name} runs on {spec.queue}, not {queue}"})
        return spec, parsed, spec.queue
