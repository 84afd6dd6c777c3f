"""Every Redis key and channel Workhorse uses, arq's protocol keys first.

arq's keys are the protocol a stock arq client shares with us (tests/queue/test_arq_protocol.py
holds them to what arq 0.28 writes and reads): a queue is a ZSET of job ids scored by their
run-at time in ms, named after the queue; the rest are per job.
"""

from __future__ import annotations

JOB_PREFIX = "arq:job:"
"""+ job id -> the job's record (app/queue/codec.py), kept until a day past its run-at time."""
IN_PROGRESS_PREFIX = "arq:in-progress:"
"""+ job id -> the lock of the process running it (its instance id; arq's own workers write "1")."""
RESULT_PREFIX = "arq:result:"
"""+ job id -> the finished job's result record, kept KEEP_RESULT_S / KEEP_FAILED_S."""
RETRY_PREFIX = "arq:retry:"
"""+ job id -> how many attempts have started (arq's job_try)."""
ABORT_SET = "arq:abort"
"""ZSET job id -> when `Job.abort()` asked (ms): jobs to cancel, queued or running."""


def health_check_key(queue: str) -> str:
    """arq's worker health record, which `arq --check` reads (app/queue/worker.py writes it)."""
    return f"{queue}:health-check"


def keyspace_channel(db: int, key: str) -> str:
    """Pub/sub: Redis announces each command on `key` here when keyspace notifications are on
    (stock arq clients announce nothing else; app/queue/notifications.py)."""
    return f"__keyspace@{db}__:{key}"


PAUSED_SET = "workhorse:paused"
"""SET of paused queue names; every process reads it."""

def alive_key(instance: str) -> str:
    """Set with a short TTL while the worker process `instance` lives (app/queue/liveness.py)."""
    return f"workhorse:alive:{instance}"


PARKED_DEAD_LETTERS = "workhorse:dead-letters:parked"
"""HASH job id -> JSON of a dead letter PostgreSQL kept refusing; `workhorse dlq list` shows them."""


def dead_letter_write_failures_key(job_id: str) -> str:
    """Counter of failed attempts to store one job's dead letter."""
    return f"workhorse:dead-letters:write-failures:{job_id}"


CONTROL_CHANNEL = "workhorse:control"
"""Pub/sub: a message here makes every process re-read the paused set at once."""

PROCESSES = "workhorse:processes"
"""HASH instance (host:pid:nonce, as in its alive key) -> JSON {queues, startedMs}, written by each
process's sidecar when it starts and removed when it stops (app/web/dashboard/processes.py)."""


OUTBOX_JOB_PREFIX = "outbox:"
"""+ an outbox row's id: the job id the relay dispatches it under. Completed results of these jobs
are not trimmed by count (only by KEEP_RESULT_S), since the relay's duplicate check needs them."""

PINNED_RESULTS = "workhorse:results:pinned"
"""ZSET job id -> when pinned (ms): results someone still has to read, which the per-queue count trim
leaves to their TTL (the BullMQ ingress pins the jobs BullMQ jobs were handed to, app/queue/bullmq/)."""

IDEMPOTENCY_PREFIX = "workhorse:api:idempotency:"
"""+ SHA-256 of an HTTP Idempotency-Key -> the first response (app/web/api/idempotency.py)."""


def wake_channel(queue: str) -> str:
    """Pub/sub: every enqueue publishes here so a waiting worker starts the job at once."""
    return f"workhorse:wake:{queue}"


def idle_workers_key(queue: str) -> str:
    """ZSET of processes (instance ids) with a free slot for `queue`, scored by their job lock's
    TTL (ms): an enqueue hands a due job straight to one of them (app/queue/handoff.py)."""
    return f"workhorse:idle:{queue}"


def handoff_channel(instance: str) -> str:
    """Pub/sub: jobs handed to the process `instance`, already claimed for it (app/queue/handoff.py)."""
    return f"workhorse:handoff:{instance}"


def prioritized_key(queue: str) -> str:
    """ZSET of the queue's due prioritised jobs, scored by priority then arrival
    (app/queue/priorities.py)."""
    return f"workhorse:prioritized:{queue}"


def priorities_key(queue: str) -> str:
    """HASH job id -> priority of the queue's prioritised jobs, until they finish."""
    return f"workhorse:priorities:{queue}"


def priority_seq_key(queue: str) -> str:
    """Counter giving prioritised jobs of one priority their arrival order."""
    return f"workhorse:priority-seq:{queue}"


def rate_key(queue: str) -> str:
    """Counter of the jobs the queue's rate limit window has started, expiring with the window
    (BullMQ's limiter: at most `max` per `duration`, across all processes)."""
    return f"workhorse:rate:{queue}"


def stats_key(queue: str) -> str:
    """HASH of cumulative counters (completed, failed, retried, dead_lettered, skipped)."""
    return f"workhorse:stats:{queue}"


def running_key(queue: str) -> str:
    """HASH job id -> JSON {startedMs, expiresMs, process}: jobs running now, for stats and
    `jobs stuck`; each process refreshes its own entries, which expire if it dies."""
    return f"workhorse:running:{queue}"


def completed_key(queue: str) -> str:
    """ZSET job id -> finished ms of completed jobs whose result is kept; trimmed to the newest
    KEEP_RESULTS_PER_QUEUE, their result keys deleted with them."""
    return f"workhorse:completed:{queue}"


def progress_key(job_id: str) -> str:
    """STRING (JSON) of a running job's progress, kept as long as its result."""
    return f"workhorse:progress:{job_id}"


def cron_claim_key(entry: str, tick_ms: int) -> str:
    """Set NX by the one process that fires this tick of a cron entry."""
    return f"workhorse:cron:{entry}:{tick_ms}"


CRON_LAST_RUN = "workhorse:cron:last"
"""HASH entry -> JSON {tick, firedAt, jobId, outcome} of the last tick fired by any process."""


def chat_channel(user_id: str) -> str:
    """Pub/sub: each chat message for a user, as JSON, for the web app's live sessions."""
    return f"workhorse:chat:{user_id}"
