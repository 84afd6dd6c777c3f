"""Redis behind Sentinel: a worker configured with REDIS_SENTINELS follows a failover on every
connection it has (command pools, the wake hub's subscriber, the liveness thread), its readiness
goes 503 and back to 200 by itself, and jobs enqueued after the failover run on the new primary.

Real processes throughout: three `redis-server --sentinel`, a primary and its replica
(tests/support/sentinel.py), the worker as `python -m app`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError

from app.config import Settings
from app.jobs import build_registry
from app.jobs.resources import Resources
from app.queue import keys, sentinel
from app.queue.connections import connect_redis
from app.queue.subscriber import Subscription
from app.runtime.startup import open_resources
from tests.support.http import get, wait_for_status
from tests.support.sentinel import SentinelGroup
from tests.support.worker import start_worker

EnvFactory = Callable[..., dict[str, str]]


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    servers = SentinelGroup(tmp_path / "sentinel")
    servers.start()
    yield servers
    servers.stop()


@pytest.fixture
async def through_sentinel(make_env: EnvFactory, group: SentinelGroup) -> AsyncIterator[Resources]:
    """The test's own client, configured as the worker is."""
    settings = Settings.load(_sentinel_env(make_env, group))
    async with open_resources(settings, build_registry(settings), start_embedded=False) as res:
        yield res


def _sentinel_env(make_env: EnvFactory, group: SentinelGroup) -> dict[str, str]:
    env = make_env(process_liveness_ttl_s=2, **{k.lower(): v for k, v in group.env().items()})
    del env["REDIS_URL"]
    return env


async def _ping_until_done(res: Resources, timeout_s: float) -> str:
    """Enqueue a ping, again while Redis refuses, and wait for its result; its id."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                queued = await res.enqueuer.enqueue("ping", {}, queue="sla-monitor")
                assert queued is not None
                await res.enqueuer.job(queued.job_id, "sla-monitor").result(timeout_s=timeout_s, poll_delay=0.02)
                return queued.job_id
            except ConnectionError:
                await asyncio.sleep(0.05)


async def _subscribers_on(group: SentinelGroup, role: str, timeout_s: float = 15.0) -> None:
    """Until `role`'s server has a pub/sub client (the worker's wake hub)."""
    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(lambda: group.client(role).client_list(_type="pubsub")):
            await asyncio.sleep(0.1)


async def _alive_keys_on(group: SentinelGroup, role: str, timeout_s: float = 15.0) -> None:
    """Until `role`'s server holds a liveness key (the worker's liveness thread writes there)."""
    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(lambda: group.client(role).keys(keys.alive_key("*"))):
            await asyncio.sleep(0.1)


async def test_a_worker_follows_the_primarys_death_on_every_connection(
        make_env: EnvFactory, group: SentinelGroup, through_sentinel: Resources) -> None:
    """kill -9 of the primary: /health/ready turns 503, then 200 once Sentinel has promoted the
    replica; a ping enqueued then runs there; the wake hub is subscribed and the liveness key set
    on the new primary. Prints the time from the primary's death to the first job completed."""
    env = _sentinel_env(make_env, group)
    port = int(env["HEALTH_PORT"])
    worker = await start_worker(env, "--queues", "sla-monitor")
    try:
        await wait_for_status(port, "/health/ready", 200)
        await _ping_until_done(through_sentinel, 20)
        await _subscribers_on(group, "primary")

        died = group.kill("primary")
        await wait_for_status(port, "/health/ready", 503, timeout_s=10)
        job_id = await _ping_until_done(through_sentinel, 30)
        first_job_s = time.monotonic() - died
        await wait_for_status(port, "/health/ready", 200, timeout_s=20)
        ready_s = time.monotonic() - died
        print(f"\nprimary killed -> first job completed on the new primary: {first_job_s:.2f} s; "
              f"ready again within {ready_s:.2f} s")

        assert group.primary_address()[1] == group.ports["replica"]
        new_primary = group.client("replica")
        assert new_primary.exists(keys.RESULT_PREFIX + job_id)
        await _subscribers_on(group, "replica")
        await _alive_keys_on(group, "replica")
        code, detailed = await get(port, "/health/detailed")
        assert code == 200 and detailed["dependencies"]["redis"]["primary"] == f"127.0.0.1:{group.ports['replica']}"
        assert detailed["config"]["wakeMode"] == "pubsub"
    finally:
        assert await worker.stop() == 0


async def test_a_demoted_primary_loses_its_clients_to_the_new_one(
        make_env: EnvFactory, group: SentinelGroup, through_sentinel: Resources) -> None:
    """SENTINEL FAILOVER with the old primary alive (it turns replica and keeps its connections):
    writes meet READONLY and reconnect to the new primary, the hub notices within its refresh
    and resubscribes there, the liveness thread writes there; jobs keep running."""
    env = _sentinel_env(make_env, group)
    port = int(env["HEALTH_PORT"])
    worker = await start_worker(env, "--queues", "sla-monitor")
    try:
        await wait_for_status(port, "/health/ready", 200)
        await _ping_until_done(through_sentinel, 20)
        await _subscribers_on(group, "primary")

        group.sentinel_failover()
        await asyncio.to_thread(group.wait_failover)
        job_id = await _ping_until_done(through_sentinel, 30)
        assert group.client("replica").exists(keys.RESULT_PREFIX + job_id)
        await _subscribers_on(group, "replica")
        await _alive_keys_on(group, "replica")
        await wait_for_status(port, "/health/ready", 200, timeout_s=20)
    finally:
        assert await worker.stop() == 0


async def test_passwords_and_tls_reach_the_sentinels_and_the_primary(tmp_path: Path) -> None:
    """rediss+sentinel:// with the primary's password, the sentinels' own and the CA: commands,
    the subscriber and the address all go through TLS with the right credentials; a wrong
    sentinel password finds no primary (and never prints the password)."""
    group = SentinelGroup(tmp_path / "tls", password="pri-s3cret", sentinel_password="sen-s3cret", tls=True)
    await asyncio.to_thread(group.start)
    try:
        redis = connect_redis(group.url)
        try:
            assert await redis.set("k", "v")
            assert await sentinel.primary_address(redis) == ("127.0.0.1", group.ports["primary"])
            heard = asyncio.Event()
            subscription = await Subscription.open(redis, ["tls-channel"], lambda _c, _d: heard.set())
            try:
                assert subscription.address == ("127.0.0.1", group.ports["primary"])
                await redis.publish("tls-channel", "x")
                await asyncio.wait_for(heard.wait(), 5)
            finally:
                subscription.close()
        finally:
            await redis.aclose()
        wrong = connect_redis(group.url.replace("sen-s3cret", "wrong"))
        try:
            with pytest.raises(ConnectionError, match="No master found") as raised:
                await wrong.ping()
            assert "wrong" not in str(raised.value)
        finally:
            await wrong.aclose()
    finally:
        group.stop()


@pytest.mark.parametrize(("env", "says"), [
    ({"REDIS_SENTINELS": "127.0.0.1:26379"}, "REDIS_SENTINEL_MASTER"),
    ({"REDIS_SENTINELS": "127.0.0.1:99999", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_URL": "redis+sentinel://127.0.0.1:26379"}, "REDIS_URL"),
    ({"REDIS_URL": "redis+sentinel://:pw@h:1/m/0?ssl_ca_certs=/x"}, "REDIS_URL"),
    ({"REDIS_URL": "redis+sentinel://h:1/m/0?bogus=1"}, "REDIS_URL"),
    ({"REDIS_URL": "redis+sentinel://h:1/m/zero"}, "REDIS_URL"),
    ({"REDIS_URL": "redis+sentinel://[::1/m"}, "REDIS_URL"),
    ({"REDIS_URL": "redis+sentinel://,/m"}, "REDIS_URL"),
])
def test_bad_sentinel_settings_name_the_variable(env: dict[str, str], says: str) -> None:
    """Each mistake is one SettingsError naming the variable; no password is echoed."""
    from app.config import SettingsError

    with pytest.raises(SettingsError, match=says) as raised:
        Settings.load({"DATABASE_URL": "postgresql://u@h/db", **env})
    assert "pw" not in str(raised.value)


def test_sentinel_settings_become_one_url() -> None:
    """REDIS_SENTINELS, _MASTER, _PASSWORD, REDIS_PASSWORD, REDIS_DB and REDIS_TLS make the URL
    the clients use; its redacted form hides both passwords."""
    from app.config import redact_url

    settings = Settings.load({"REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2,[fd00::3]:26380",
                              "REDIS_SENTINEL_MASTER": "my master", "REDIS_SENTINEL_PASSWORD": "s&p",
                              "REDIS_PASSWORD": "p@ss", "REDIS_DB": "3", "REDIS_TLS": "true"})
    dsn = settings.redis.dsn
    assert dsn == ("rediss+sentinel://:p%40ss@10.0.0.1:26379,10.0.0.2,[fd00::3]:26380/my%20master/3"
                   "?sentinel_password=s%26p")
    assert settings.redis.variable == "REDIS_SENTINELS"
    from app.config.urls import parse_sentinel_url

    parsed = parse_sentinel_url(dsn)
    assert parsed.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("fd00::3", 26380))
    assert (parsed.master, parsed.db, parsed.password, parsed.sentinel_password, parsed.tls) == (
        "my master", 3, "p@ss", "s&p", True)
    shown = redact_url(dsn)
    assert shown is not None and "p%40ss" not in shown and "s%26p" not in shown and "10.0.0.2" in shown
