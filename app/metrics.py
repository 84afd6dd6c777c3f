"""Prometheus metrics on a private registry, so tests and several processes never collide.

Label children for (queue, job) pairs are created once at registration and cached: the hot
path of a job does no label lookups.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DURATION_BUCKETS_S = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
OUTBOX_LAG_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
OUTBOX_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000)


@dataclass(slots=True)
class JobMetrics:
    """The pre-bound children of one (queue, job) pair."""

    processed: Counter
    failed: Counter
    retried: Counter
    dead_lettered: Counter
    skipped: Counter
    duration: Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _jobs: dict[tuple[str, str], JobMetrics] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = self.registry
        labels = ["queue", "job"]
        self.processed = Counter("workhorse_jobs_processed", "Job runs that finished", labels, registry=r)
        self.failed = Counter("workhorse_jobs_failed", "Job runs that raised", labels, registry=r)
        self.retried = Counter("workhorse_jobs_retried", "Failed runs scheduled again", labels, registry=r)
        self.dead_lettered = Counter(
            "workhorse_jobs_dead_lettered", "Jobs moved to the dead-letter queue", labels, registry=r
        )
        self.skipped = Counter("workhorse_jobs_skipped", "Jobs finished as skipped", labels, registry=r)
        self.duration = Histogram(
            "workhorse_job_duration_seconds", "Run time of one job attempt", labels,
            buckets=DURATION_BUCKETS_S, registry=r,
        )
        self.queue_depth = Gauge(
            "workhorse_queue_depth", "Jobs in a queue by state", ["queue", "state"], registry=r
        )
        self.dlq_depth = Gauge("workhorse_queue_dlq_depth", "Dead letters not yet retried", ["queue"], registry=r)
        self.oldest_waiting_age = Gauge(
            "workhorse_queue_oldest_waiting_age_seconds", "Age of the oldest due job not started; 0 when none waits",
            ["queue"], registry=r)
        self.in_flight = Gauge("workhorse_jobs_in_flight", "Jobs running in this process", ["queue"], registry=r)
        self.paused = Gauge("workhorse_queue_paused", "1 while the queue is paused", ["queue"], registry=r)
        self.breaker_state = Gauge(
            "workhorse_circuit_breaker_state", "0 closed, 1 half-open, 2 open", ["provider"], registry=r
        )
        self.loop_lag = Gauge("workhorse_event_loop_lag_seconds", "Latest event-loop lag", registry=r)
        self.loop_lag_max = Gauge("workhorse_event_loop_lag_max_seconds", "Worst loop lag seen", registry=r)
        self.notifications = Counter(
            "workhorse_notifications", "Notification sends by channel and outcome "
            "(sent, duplicate, skipped, failed, in_doubt_resend)", ["channel", "outcome"], registry=r,
        )
        self.up = Gauge("workhorse_worker_up", "1 while the queue's worker polls", ["queue"], registry=r)
        self.fenced = Counter(
            "workhorse_jobs_fenced", "Late outcomes refused: the process had lost the job's lock to another",
            ["queue"], registry=r)
        self.wakeups = Counter(
            "workhorse_wakeups", "What woke a queue's worker to poll: publish (an enqueue's wake-up), keyspace (a "
            "stock arq client's ZADD, by keyspace notification), sweep (the fallback found jobs)",
            ["queue", "source"], registry=r)
        self._declare_outbox(r)

    def _declare_outbox(self, r: CollectorRegistry) -> None:
        """Transactional outbox (app/queue/outbox/); the gauges are refreshed every few seconds."""
        self.outbox_waiting = Gauge("workhorse_outbox_rows_waiting", "Outbox rows not yet dispatched", registry=r)
        self.outbox_oldest = Gauge(
            "workhorse_outbox_oldest_waiting_seconds", "Age of the oldest outbox row waiting", registry=r)
        self.outbox_lag = Histogram(
            "workhorse_outbox_lag_seconds", "From an outbox row's created_at (its transaction's start) to its dispatch",
            buckets=OUTBOX_LAG_BUCKETS_S, registry=r)
        self.outbox_batch_size = Histogram(
            "workhorse_outbox_batch_size", "Rows claimed per relay batch", buckets=OUTBOX_BATCH_BUCKETS, registry=r)
        self.outbox_rows = Counter(
            "workhorse_outbox_rows", "Outbox rows by outcome (dispatched, duplicate, failed)", ["outcome"], registry=r)

    def job(self, queue: str, job: str) -> JobMetrics:
        key = (queue, job)
        found = self._jobs.get(key)
        if found is None:
            found = self._jobs[key] = JobMetrics(
                processed=self.processed.labels(queue, job),
                failed=self.failed.labels(queue, job),
                retried=self.retried.labels(queue, job),
                dead_lettered=self.dead_lettered.labels(queue, job),
                skipped=self.skipped.labels(queue, job),
                duration=self.duration.labels(queue, job),
            )
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
