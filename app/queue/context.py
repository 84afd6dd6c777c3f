"""What a job function receives besides its payload: its identity, the process's resources and
a logger bound to the job (bound on first use: most runs never log).

`JobContext` is generic in the resources type so that the engine does not import the runtime
that builds them: jobs annotate `Job` (app/jobs/resources.py), i.e. `JobContext[Resources]`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.queue import codec, keys

R = TypeVar("R")

_JOBS_LOG: structlog.stdlib.BoundLogger = structlog.get_logger("app.jobs")


@dataclass(slots=True)
class JobContext(Generic[R]):
    res: R
    """Pools, providers, breakers, metrics and settings of this process."""
    job_id: str
    name: str
    queue: str
    attempt: int
    """1 for the first run; arq's job_try."""
    enqueued_ms: int
    """When the job was enqueued, in Unix milliseconds (arq's record keeps no finer time)."""
    redis: Redis = field(repr=False)
    progress_ttl_s: int = 3600
    _log: structlog.stdlib.BoundLogger | None = field(default=None, repr=False)

    @property
    def enqueued_at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.enqueued_ms / 1000, dt.UTC)

    @property
    def log(self) -> structlog.stdlib.BoundLogger:
        """The jobs' logger bound to this run: queue, job, job_id, attempt."""
        if self._log is None:
            self._log = _JOBS_LOG.bind(queue=self.queue, job=self.name, job_id=self.job_id, attempt=self.attempt)
        return self._log

    async def progress(self, percent: int, **detail: Any) -> None:
        """Report progress (0-100), readable with `workhorse jobs show ID` while the job runs."""
        body = codec.dumps({"percent": percent, **detail})
        try:
            await self.redis.set(keys.progress_key(self.job_id), body, ex=max(self.progress_ttl_s, 60))
        except (RedisError, OSError) as exc:
            # Progress is for people watching; a Redis blip must not fail the job's real work.
            self.log.warning("job_progress_not_stored", error=str(exc))
            return
        self.log.debug("job_progress", percent=percent)
