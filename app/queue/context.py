"""What a job function receives besides its payload: its identity, resources and a logger."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from app.queue import codec, keys

if TYPE_CHECKING:
    from app.runtime.resources import Resources


@dataclass(slots=True)
class JobContext:
    res: Resources
    """Pools, clients, breakers, metrics and settings of this process."""
    job_id: str
    name: str
    queue: str
    attempt: int
    """1 for the first run; arq's job_try."""
    enqueued_at: dt.datetime
    log: structlog.stdlib.BoundLogger = field(repr=False)

    async def progress(self, percent: int, **detail: Any) -> None:
        """Report progress (0-100), readable with `workhorse jobs show ID` while the job runs."""
        body = codec.dumps({"percent": percent, **detail})
        ttl_s = max(self.res.settings.keep_result_s, 60)
        await self.res.redis.set(keys.progress_key(self.job_id), body, ex=ttl_s)
        self.log.debug("job_progress", percent=percent)
