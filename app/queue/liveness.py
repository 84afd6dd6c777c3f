"""Which worker processes are alive, known to every process within seconds.

Each process keeps `workhorse:alive:<instance>` set with a short TTL, refreshed three times per
TTL from a thread of its own (so a job that blocks the event loop for a while does not make its
process look dead). Every job lock holds the instance that claimed it, and the claim script
takes over a lock whose owner's key has expired: the jobs of a process killed with -9 run again
within the liveness TTL plus one poll (~7 s), not after the job lock's 30 s. A live process is
never robbed: its key exists however long its jobs run, and their locks are extended anyway.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading

import structlog
from redis import Redis
from redis.exceptions import RedisError

from app.config.urls import is_sentinel_url
from app.queue import keys, sentinel

log = structlog.get_logger(__name__)

def new_instance_id() -> str:
    """A worker process among all processes ever: host, pid and a nonce (a restarted container
    may reuse host name and pid; two workers run in one Python process in tests)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Liveness:
    """The thread that keeps a worker process's alive key fresh."""

    def __init__(self, redis_url: str, instance: str, *, ttl_s: float) -> None:
        self.key = keys.alive_key(instance)
        self.ttl_ms = int(ttl_s * 1000)
        # Three refreshes per TTL: two may be missed (a slow Redis) before the key lapses, and an
        # idle process still costs Redis less than one worker polling twice a second.
        self.every_s = ttl_s / 3
        options = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
        self._client = (sentinel.connect_sync(redis_url, **options) if is_sentinel_url(redis_url)
                        else Redis.from_url(redis_url, **options))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workhorse-liveness", daemon=True)

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing and delete the key (this process's jobs were requeued by now)."""
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(RedisError, OSError):  # it expires by itself
            self._client.delete(self.key)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._beat()

    def _beat(self) -> None:
        try:
            self._client.set(self.key, "1", px=self.ttl_ms)
        except (RedisError, OSError) as exc:
            # Redis away: nobody can take our jobs meanwhile either (the claim runs in Redis).
            log.debug("liveness_refresh_failed", error=str(exc))
