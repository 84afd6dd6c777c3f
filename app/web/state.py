"""What the sidecar reads: the process's resources and the engine's state, never the process.

The runtime builds one WebState when it starts the sidecar (app/runtime/process.py); handlers
find it under STATE. Everything in it is read-only to them: the engine's snapshot is taken
per request, and actions go through Redis and PostgreSQL like every other producer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from app.jobs.resources import Resources
from app.queue.engine import EngineSnapshot
from app.queue.ticker import CronTicker


@dataclass(frozen=True, slots=True)
class WebState:
    res: Resources
    """Redis, PostgreSQL, metrics, the enqueuer, dead letters, breakers, settings."""
    snapshot: Callable[[], EngineSnapshot]
    """The engine's state now: its queues, workers, wake mode, whether it is stopping."""
    cron: CronTicker
    """The cron entries this process fires (their next and last runs)."""
    loop_lag_max_s: Callable[[], float]
    """The worst event-loop lag the process has seen."""


STATE: web.AppKey[WebState] = web.AppKey("state", WebState)
