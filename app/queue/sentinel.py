"""Redis behind Sentinel: clients that ask the sentinels where the primary is.

A `redis+sentinel://` URL (app/config/urls.py) names sentinels and a master name instead of a
server. Every connection Workhorse opens finds the primary through them when it connects, so each
follows a failover by reconnecting: the command pools (redis-py's SentinelConnectionPool, which
also turns a primary demoted under it — READONLY — into a lost connection), the pub/sub
subscriber (app/queue/subscriber.py asks `primary_address` before it connects, and the wake hub
compares it every few seconds, since a demoted primary keeps its subscribers), and the liveness
thread (a sync client of the same kind). Until a primary is known each of them fails as Redis
being down does, and the engine rides that out as it rides out any outage (app/backoff.py).
"""

from __future__ import annotations

from typing import Any

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.sentinel import Sentinel as SyncSentinel

from app.config.urls import SentinelAddress, parse_sentinel_url

# The sentinels answer in a millisecond; one that does not is skipped for the next, so it may not
# hold a reconnect for long.
SENTINEL_TIMEOUT_S = 1.0


def _tls(address: SentinelAddress) -> dict[str, Any]:
    if not address.tls:
        return {}
    options: dict[str, Any] = {"ssl": True, **address.tls_options}
    if "ssl_check_hostname" in options:
        options["ssl_check_hostname"] = options["ssl_check_hostname"].lower() in ("1", "true", "yes", "on")
    return options


def _sentinel_kwargs(address: SentinelAddress) -> dict[str, Any]:
    return {"username": address.sentinel_username, "password": address.sentinel_password,
            "socket_connect_timeout": SENTINEL_TIMEOUT_S, "socket_timeout": SENTINEL_TIMEOUT_S, **_tls(address)}


def _primary_kwargs(address: SentinelAddress) -> dict[str, Any]:
    return {"db": address.db, "username": address.username, "password": address.password, **_tls(address)}


def connect(url: str, pool_class: type[SentinelConnectionPool], **options: Any) -> Redis:
    """An asyncio client on the primary the URL's sentinels name, on a pool of `pool_class`;
    `options` as for any pool. Closing the client closes its sentinels' connections too."""
    address = parse_sentinel_url(url)
    sentinel = Sentinel(address.sentinels, sentinel_kwargs=_sentinel_kwargs(address))
    client: Redis = sentinel.master_for(address.master, connection_pool_class=pool_class,
                                        **_primary_kwargs(address), **options)
    return client


def connect_sync(url: str, **options: Any) -> SyncRedis:
    """The same for a thread that cannot use the event loop (app/queue/liveness.py)."""
    address = parse_sentinel_url(url)
    sentinel = SyncSentinel(address.sentinels, sentinel_kwargs=_sentinel_kwargs(address))
    client: SyncRedis = sentinel.master_for(address.master, **_primary_kwargs(address), **options)
    return client


async def primary_address(client: Redis | ConnectionPool) -> tuple[str, int] | None:
    """Where the sentinels say the primary is now, for a client made by `connect` (or its pool);
    None for any other. Raises redis-py's ConnectionError (MasterNotFoundError) while none is known."""
    pool = client.connection_pool if isinstance(client, Redis) else client
    if not isinstance(pool, SentinelConnectionPool):
        return None
    host, port = await pool.get_master_address()  # type: ignore[no-untyped-call]  # unannotated in redis-py
    return str(host), int(port)


__all__ = ["SENTINEL_TIMEOUT_S", "connect", "connect_sync", "primary_address"]
