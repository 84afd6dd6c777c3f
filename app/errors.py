"""The exception tree every job, client and channel speaks; the registry acts on it.

    AppError
     ├─ TransientError      retry with backoff (network, timeout, 5xx, DB connection, deadlock)
     │   ├─ RateLimited      retry after Retry-After (≥ 60 s)
     │   └─ CircuitOpen      defer until the breaker half-opens; no attempt used
     └─ PermanentError      no retry → dead letter (invalid input, missing row, 4xx)
         ├─ InvalidPayload   the payload does not match the job's model; names the fields
         └─ NotFound         the row or file the job is about does not exist

    JobTimedOut            a TimeoutError: the job ran past its queue's timeout and was
                           cancelled; retried like any timeout

    JobSkipped             not an error: the job finished without doing its work (the reason
                           is the result), e.g. a provider that is not configured

Clients translate their library's failures into these with `raise ... from exc`. Jobs never
catch to retry; anything outside the tree is a bug: it is retried within the queue's attempts
like a transient failure (app/queue/retries.py: a timing-dependent bug may pass), then
dead-lettered with reason `bug` and its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class SettingsError(Exception):
    """A setting that cannot be used; the message names the variable. Not an AppError: it
    stops start-up (exit 2), it never fails a job."""


class AppError(Exception):
    """Base of every error the project raises on purpose."""


class TransientError(AppError):
    """A passing failure: the same call may succeed later."""


class RateLimited(TransientError):
    """The provider asked us to slow down; `retry_after_s` is its Retry-After when it sent one."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CircuitOpen(TransientError):
    """A provider's breaker is open; the job waits for it without spending an attempt."""

    def __init__(self, provider: str, retry_after_s: float) -> None:
        super().__init__(f"circuit breaker for {provider} is open; retry in {retry_after_s:.1f}s")
        self.provider = provider
        self.retry_after_s = retry_after_s


class PermanentError(AppError):
    """The same call will fail again: no retry."""


class NotFound(PermanentError):
    """The row or file a job is about does not exist."""


class InvalidPayload(PermanentError):
    """A payload that does not fit its job's model; the message names each bad field."""

    def __init__(self, job: str, problems: Mapping[str, str]) -> None:
        self.job = job
        self.problems = dict(problems)
        detail = "; ".join(f"{field}: {why}" for field, why in self.problems.items())
        super().__init__(f"invalid payload for {job}: {detail}")

    @classmethod
    def from_pydantic(cls, job: str, errors: Iterable[Mapping[str, Any]]) -> InvalidPayload:
        problems: dict[str, str] = {}
        for err in errors:
            field = ".".join(str(part) for part in err.get("loc", ())) or "(payload)"
            problems.setdefault(field, str(err.get("msg", "invalid")))
        return cls(job, problems)


class UnknownJob(PermanentError):
    """A job name that no JobSpec registers."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown job {name!r}; known jobs: {', '.join(sorted(known))}")
        self.name = name


class JobTimedOut(TimeoutError):
    """The registry cancelled a job that ran past its timeout."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the job ran past its timeout of {timeout_s:g} s and was cancelled")
        self.timeout_s = timeout_s


class JobSkipped(Exception):
    """Raised by a job (or a channel it calls) that finishes without doing its work."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
