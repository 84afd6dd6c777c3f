"""Recent throughput per queue, for the dashboard's sparklines.

The shared counters in Redis are cumulative, so a sampler in each sidecar reads them every
SAMPLE_EVERY_S and keeps the last SAMPLES readings in memory; the differences are the jobs
finished (completed, failed for good, dead-lettered or skipped) per interval. A process that has
just started shows a short line: history is not worth a Redis key of its own.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Mapping

from app.queue.stats import QueueStats

SAMPLE_EVERY_S = 5.0
SAMPLES = 60  # five minutes


def finished(s: QueueStats) -> int:
    return s.completed + s.dead_lettered + s.skipped


WATCHED_FOR_S = 600.0
"""Sampling goes on this long after a page last showed throughput, then stops: an idle worker
nobody watches costs Redis nothing for the dashboard."""


class Throughput:
    def __init__(self, samples: int = SAMPLES) -> None:
        self._readings: dict[str, deque[tuple[float, int]]] = {}
        self._samples = samples
        self._watched_at = float("-inf")

    def watched(self) -> None:
        """A page is showing throughput now."""
        self._watched_at = time.monotonic()

    @property
    def wanted(self) -> bool:
        return time.monotonic() - self._watched_at < WATCHED_FOR_S

    def record(self, current: Mapping[str, QueueStats], *, now: float | None = None) -> None:
        at = time.monotonic() if now is None else now
        for queue, s in current.items():
            self._readings.setdefault(queue, deque(maxlen=self._samples + 1)).append((at, finished(s)))

    def per_minute(self, queue: str) -> list[float]:
        """Jobs finished per minute in each interval, oldest first (counters reset: 0)."""
        readings = list(self._readings.get(queue, ()))
        return [max(0, n2 - n1) * 60 / max(t2 - t1, 1e-9)
                for (t1, n1), (t2, n2) in itertools.pairwise(readings)]


def sparkline(values: list[float], *, width: int = 120, height: int = 24) -> str:
    """SVG polyline points for `values` scaled into width x height ("" for fewer than two)."""
    if len(values) < 2:
        return ""
    top = max(values) or 1.0
    step = width / (len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - 1 - (v / top) * (height - 2):.1f}" for i, v in enumerate(values))
