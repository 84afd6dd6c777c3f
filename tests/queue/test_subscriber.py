"""The pub/sub subscriber hands every message, byte for byte and in order, to its callback, over
each way Redis is reached (unix socket, TCP, TLS, with a password or an ACL user), and fails
fast and in redis-py's own terms when it cannot."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from app.queue.subscriber import OnMessage, Subscription
from app.runtime.embedded import RedisServer
from tests.support.services import ServiceUrls
from tests.support.system import require_binary
from tests.support.tcp_redis import TcpRedis

# Larger than asyncio's 256 KiB read (and TLS's 16 KiB record): it arrives over many reads.
LARGE = bytes(range(256)) * 4096
PAYLOADS = [b"first", b"", b"\x00nul\r\n$3\r\nfoo\r\n*1\r\n-ERR not a reply\r\n", LARGE, b"last"]
PASSWORD, ACL_USER, ACL_PASSWORD = "hunter2", "worker", "s3cret"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Inbox:
    """An `on_message` that keeps what it receives, in order, and lets a test await a count."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes]] = []
        self._arrived = asyncio.Event()

    def __call__(self, channel: bytes, data: bytes) -> None:
        self.messages.append((channel, data))
        self._arrived.set()

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> list[tuple[bytes, bytes]]:
        async with asyncio.timeout(timeout_s):
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.messages


@asynccontextmanager
async def subscribed(url: str, channels: list[str], on_message: OnMessage) -> AsyncIterator[Subscription]:
    async with Redis.from_url(url) as client:
        subscription = await Subscription.open(client, channels, on_message, timeout_s=5)
        try:
            yield subscription
        finally:
            subscription.close()


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server of this test alone, on a unix socket (the embedded default's)."""
    server = RedisServer(tmp_path / "redis", persist=False)
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


@pytest.fixture(params=["test-redis", "unix", "tcp", "tls"])
async def redis_url(request: pytest.FixtureRequest, services: ServiceUrls, tmp_path: Path) -> AsyncIterator[str]:
    """Each way to reach Redis: the tests' own, a unix socket, plain TCP, and TLS verified
    against the CA named in the URL (rediss://...?ssl_ca_certs=)."""
    kind = request.param
    if kind == "test-redis":
        yield services.redis_url
    elif kind == "unix":
        server = RedisServer(tmp_path / "redis", persist=False)
        await asyncio.to_thread(server.start)
        yield server.url
        await asyncio.to_thread(server.stop)
    else:
        tcp = TcpRedis(tmp_path / kind, tls=kind == "tls")
        await asyncio.to_thread(tcp.start)
        if tcp.tls:
            yield f"rediss://127.0.0.1:{tcp.port}/0?ssl_ca_certs={tcp.ca}"
        else:
            yield f"redis://127.0.0.1:{tcp.port}/0"
        await asyncio.to_thread(tcp.stop)


async def test_messages_arrive_in_order_with_their_exact_bytes(redis_url: str) -> None:
    """open() returns once Redis confirms the subscription (the first PUBLISH already counts a
    receiver); then every message, empty, binary (NUL, CRLF, RESP look-alikes) or 1 MiB, reaches
    on_message whole, in publish order."""
    inbox = Inbox()
    async with Redis.from_url(redis_url) as publisher, subscribed(redis_url, ["sub:order"], inbox):
        for data in PAYLOADS:
            assert await publisher.publish("sub:order", data) == 1
        received = await inbox.wait_for(len(PAYLOADS))
    assert [channel for channel, _ in received] == [b"sub:order"] * len(PAYLOADS)
    assert [data for _, data in received] == PAYLOADS


async def test_each_message_comes_with_the_channel_it_was_published_on(services: ServiceUrls) -> None:
    """With several channels (one not ASCII), each message is handed over with its own channel."""
    channels = ["sub:a", "sub:b", "sub:ünï"]
    sent = [(channels[n % 3].encode(), f"m{n}".encode()) for n in range(12)]
    inbox = Inbox()
    async with Redis.from_url(services.redis_url) as publisher, subscribed(services.redis_url, channels, inbox):
        for channel, data in sent:
            assert await publisher.publish(channel, data) == 1
        assert await inbox.wait_for(len(sent)) == sent


async def test_a_handler_that_raises_for_one_message_still_gets_the_rest(services: ServiceUrls) -> None:
    """An exception from on_message is logged and dropped: the messages behind it in the same
    read, and later ones, still arrive, and the connection stays up."""
    inbox = Inbox()

    def on_message(channel: bytes, data: bytes) -> None:
        if data == b"bad":
            raise ValueError("a bug in the handler")
        inbox(channel, data)

    async with Redis.from_url(services.redis_url) as publisher, \
            subscribed(services.redis_url, ["sub:raise"], on_message) as subscription:
        async with publisher.pipeline(transaction=False) as pipe:  # one write: one read, most likely
            for data in (b"before", b"bad", b"after"):
                pipe.publish("sub:raise", data)
            assert await pipe.execute() == [1, 1, 1]
        assert await publisher.publish("sub:raise", b"later") == 1
        received = await inbox.wait_for(3)
        assert [data for _, data in received] == [b"before", b"after", b"later"]
        assert not subscription.lost
        subscription.raise_if_lost()


async def test_a_connection_the_server_kills_is_reported_lost(private_redis: RedisServer) -> None:
    """CLIENT KILL on the subscriber's connection runs the when_lost callbacks (also one added
    after the loss); `lost` is then true and raise_if_lost() raises redis-py's ConnectionError."""
    lost, noticed_late = asyncio.Event(), asyncio.Event()
    async with Redis.from_url(private_redis.url) as admin, \
            subscribed(private_redis.url, ["sub:kill"], Inbox()) as subscription:
        subscription.when_lost(lost.set)
        [client] = await admin.client_list(_type="pubsub")
        assert await admin.client_kill_filter(_id=client["id"]) == 1
        async with asyncio.timeout(5):
            await lost.wait()
            subscription.when_lost(noticed_late.set)
            await noticed_late.wait()
        assert subscription.lost
        with pytest.raises(RedisConnectionError):
            subscription.raise_if_lost()


@pytest.fixture
async def guarded_redis(private_redis: RedisServer) -> AsyncIterator[Path]:
    """A private Redis (its unix socket) that requires a password, with an ACL user of its own."""
    async with Redis.from_url(private_redis.url) as admin:
        await admin.acl_setuser(ACL_USER, enabled=True, passwords=[f"+{ACL_PASSWORD}"], channels=["*"],
                                commands=["+@all"])
        await admin.config_set("requirepass", PASSWORD)
    yield private_redis.socket


@pytest.mark.parametrize("credentials", [f":{PASSWORD}", f"{ACL_USER}:{ACL_PASSWORD}"], ids=["password", "acl-user"])
async def test_credentials_in_the_url_are_used_to_authenticate(guarded_redis: Path, credentials: str) -> None:
    """The password (default user) or user and password (ACL user) of the client's URL let the
    subscriber in, over the unix socket."""
    url = f"unix://{credentials}@{guarded_redis}"
    inbox = Inbox()
    async with Redis.from_url(url) as publisher, subscribed(url, ["sub:auth"], inbox):
        assert await publisher.publish("sub:auth", b"\x00in") == 1
        assert await inbox.wait_for(1) == [(b"sub:auth", b"\x00in")]


@pytest.mark.parametrize("credentials", [":wrong", f"{ACL_USER}:wrong", f"nobody:{PASSWORD}"],
                         ids=["wrong-password", "wrong-user-password", "unknown-user"])
async def test_refused_credentials_raise_authentication_error_at_once(guarded_redis: Path, credentials: str) -> None:
    """Wrong credentials end open() with AuthenticationError, long before its timeout."""
    started = time.monotonic()
    async with Redis.from_url(f"unix://{credentials}@{guarded_redis}") as client:
        with pytest.raises(AuthenticationError):
            await Subscription.open(client, ["sub:auth"], Inbox(), timeout_s=3)
    assert time.monotonic() - started < 1.5


async def test_no_password_for_a_server_that_requires_one_raises_authentication_error(
        guarded_redis: Path) -> None:
    """No credentials for a server that requires them: AuthenticationError, as redis-py raises."""
    async with Redis.from_url(f"unix://{guarded_redis}") as client:
        with pytest.raises(AuthenticationError):
            await Subscription.open(client, ["sub:auth"], Inbox(), timeout_s=3)


async def _answer_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        writer.write(b"HTTP/1.1 400 Bad\r\n\r\n")
        await writer.drain()
        await reader.read()
    writer.close()


async def _say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        await reader.read()
    writer.close()


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@pytest.mark.parametrize(("handler", "error"), [
    (_answer_http, RedisConnectionError), (_say_nothing, TimeoutError), (_hang_up, RedisConnectionError),
], ids=["answers-http", "says-nothing", "hangs-up"])
async def test_a_server_that_is_not_redis_fails_open_within_its_timeout(
        handler: Handler, error: type[Exception]) -> None:
    """A TCP server that answers garbage, never answers, or hangs up: open() raises redis-py's
    ConnectionError or TimeoutError within its timeout_s, never hangs."""
    timeout_s = 0.5
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        async with Redis(host="127.0.0.1", port=port) as client, asyncio.timeout(5):
            with pytest.raises(error):
                await Subscription.open(client, ["sub:x"], Inbox(), timeout_s=timeout_s)
    finally:
        server.close()
        await server.wait_closed()
    assert time.monotonic() - started < timeout_s + 1.0


async def test_a_handler_that_closes_the_subscription_gets_nothing_more(services: ServiceUrls) -> None:
    """close() inside on_message stops delivery at once, even of messages read in the same
    chunk, and the subscription then says it was closed here, not by the server."""
    inbox = Inbox()
    holder: list[Subscription] = []

    def on_message(channel: bytes, data: bytes) -> None:
        inbox(channel, data)
        if data == b"stop":
            holder[0].close()

    async with Redis.from_url(services.redis_url) as publisher, \
            subscribed(services.redis_url, ["sub:close"], on_message) as subscription:
        holder.append(subscription)
        async with publisher.pipeline(transaction=False) as pipe:
            for data in (b"a", b"stop", b"x1", b"x2"):
                pipe.publish("sub:close", data)
            await pipe.execute()
        await inbox.wait_for(2)
        await publisher.ping()  # the rest, had it been delivered, would have been by now
        assert [data for _, data in inbox.messages] == [b"a", b"stop"]
        with pytest.raises(RedisConnectionError, match="closed by this process"):
            subscription.raise_if_lost()


async def test_no_channel_is_refused_before_connecting(services: ServiceUrls) -> None:
    async with Redis.from_url(services.redis_url) as client:
        with pytest.raises(ValueError, match="at least one channel"):
            await Subscription.open(client, [], Inbox())


async def test_a_tcp_subscription_has_kernel_keepalives(tmp_path: Path) -> None:
    """The subscriber only listens, so a peer that vanished silently is found by TCP keepalives
    (the kernel's timer on the connection, as `ss` shows it), not by a command to Redis."""
    ss = require_binary("ss")
    tcp = TcpRedis(tmp_path / "tcp", tls=False)
    await asyncio.to_thread(tcp.start)
    url = f"redis://127.0.0.1:{tcp.port}/0"
    try:
        async with Redis.from_url(url) as admin, subscribed(url, ["sub:alive"], Inbox()):
            [client] = await admin.client_list(_type="pubsub")
            proc = await asyncio.create_subprocess_exec(ss, "-tnoH", "state", "established", "src", client["addr"],
                                                        stdout=asyncio.subprocess.PIPE)
            shown = (await proc.communicate())[0].decode()
        assert "keepalive" in shown, shown
    finally:
        await asyncio.to_thread(tcp.stop)
