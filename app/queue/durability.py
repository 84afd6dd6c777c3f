"""Durable acknowledgements: a write is acknowledged only once replicas have it.

Redis acknowledges a write as soon as the primary has applied it and replicates afterwards; a
primary that dies in between takes the write with it, and the replica promoted in its place
never saw it. An enqueue the web app was told had succeeded (an API 201, an outbox row marked
DISPATCHED) is then gone. With REDIS_MIN_REPLICAS_ACK=N the engine follows each write that must
survive a failover (enqueues, finishes: results, retries and the outcome of a dead letter) with
`WAIT N timeout` on the same connection, and reports success only when N replicas confirmed it.
Short of that the write fails with NotReplicated: the API answers 503, the outbox leaves the row
to be dispatched again, a Python caller gets the exception, and a finish is held and written
again (app/queue/running.py) — never an acknowledgement that a failover can take back. Every
write so guarded is idempotent (an enqueue under the same id is refused as a duplicate, a finish
applied twice changes nothing), so writing it again after a NotReplicated is safe.

Claims are not guarded: a claim lost in a failover only means the job is claimed again, which
the engine already survives (at-least-once, with side effects kept once by the notification
ledger).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import ConnectionError


@dataclass(frozen=True, slots=True)
class Durability:
    """How many replicas must confirm a write, and how long they have."""

    replicas: int = 0
    timeout_ms: int = 1000

    @property
    def required(self) -> bool:
        return self.replicas > 0


NONE = Durability()


class NotReplicated(ConnectionError):
    """The primary applied the write but fewer replicas than required confirmed it in time.

    A ConnectionError, so that every caller treats it as it treats Redis being unreachable:
    the write is not acknowledged, and is made again."""

    def __init__(self, confirmed: int, durability: Durability) -> None:
        super().__init__(f"{confirmed} of {durability.replicas} replica(s) confirmed the write within "
                         f"{durability.timeout_ms} ms (REDIS_MIN_REPLICAS_ACK)")
        self.confirmed = confirmed
