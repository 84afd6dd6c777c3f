"""What the machine itself can do, measured in the same run as the figure it bounds.

Absolute figures move with the machine (the same bench differs ~2x between two 2-core boxes), so
each Workhorse figure that has a physical floor or ceiling is printed beside it:

- pickup latency against a bare redis-py PUBLISH reaching a subscriber in another process, paced
  and timed exactly as the jobs are (wall clock just before the call to wall clock on arrival);
- reminder delivery against aiosmtplib alone feeding the same SMTP sink over the same number of
  connections, from another process (as the worker is), with messages of the reminders' size.

The SQL limit of the SLA scan lives in bench/sla.py, beside the seed it runs on. The child
halves run as `python -m bench.limits subscribe|smtp …`; their last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import suppress
from email.message import Message
from email.mime.text import MIMEText

import aiosmtplib
from redis.asyncio import Redis

from app.config import PROJECT_ROOT
from bench.env import BenchEnv, clean_environ, run_json

_STOP = b"stop"


async def pubsub_floor_ms(env: BenchEnv, *, messages: int, interval_s: float) -> list[float]:
    """One-way PUBLISH → subscriber delays (ms) of `messages` sent `interval_s` apart."""
    channel = "bench:floor"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.limits", "subscribe", env.redis_url, channel,
        env=clean_environ({}), cwd=PROJECT_ROOT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    redis = Redis.from_url(env.redis_url)
    try:
        async with asyncio.timeout(30):
            await proc.stdout.readline()  # "ready": subscribed
        start = time.perf_counter()
        for i in range(messages):
            await asyncio.sleep(max(0.0, start + i * interval_s - time.perf_counter()))
            await redis.publish(channel, repr(time.time()))
        await redis.publish(channel, _STOP)
        async with asyncio.timeout(30):
            out, _ = await proc.communicate()
    finally:
        await redis.aclose()
        with suppress(ProcessLookupError):
            proc.kill()
    delays: list[float] = json.loads(out.decode().strip().splitlines()[-1])["delays_ms"]
    return delays


async def _subscribe(url: str, channel: str) -> None:
    redis = Redis.from_url(url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    print("ready", flush=True)
    delays: list[float] = []
    async for message in pubsub.listen():
        arrived = time.time()
        if message["type"] != "message":
            continue
        if message["data"] == _STOP:
            break
        delays.append((arrived - float(message["data"])) * 1000)
    print(json.dumps({"delays_ms": delays}), flush=True)
    await pubsub.aclose()
    await redis.aclose()


async def smtp_limit_per_s(port: int, *, connections: int, messages: int, size: int) -> float:
    """Messages/s aiosmtplib alone delivers to 127.0.0.1:`port` over `connections` connections
    (held open, as the worker's pool holds them), run in its own process."""
    argv = [sys.executable, "-m", "bench.limits", "smtp", "--port", str(port), "--connections", str(connections),
            "--messages", str(messages), "--size", str(size)]
    answer = await run_json(argv, clean_environ({}), timeout_s=300)
    return float(answer["per_s"])


def _message(n: int, size: int) -> Message:
    """A message of `size` bytes on the wire (CRLF line ends, as SMTP sends it and the sink
    counts the reminders): plain ASCII sent as is (7bit), so no transfer encoding makes it larger
    than the reminders it stands in for."""
    mime = MIMEText("", "plain", "us-ascii")
    mime["From"] = "reminders@workhorse.test"
    mime["To"] = f"limit{n}@example.com"
    mime["Subject"] = f"Reminder {n}"
    headers = len(mime.as_bytes().replace(b"\n", b"\r\n"))
    full, rest = divmod(max(0, size - headers), 76)  # lines of 74 bytes and CRLF
    lines = ["x" * 74] * full + (["x" * (rest - 2)] if rest >= 2 else [])
    mime.set_payload("".join(line + "\n" for line in lines), "us-ascii")
    return mime


async def _feed(port: int, connections: int, messages: int, size: int) -> None:
    built = [_message(n, size) for n in range(messages)]  # the worker builds its MIME too, but
    # that is the job's work; the limit is what the wire and the sink take
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, use_tls=False)
               for _ in range(connections)]
    for client in clients:
        await client.connect()
    queue: asyncio.Queue[Message] = asyncio.Queue()
    for mime in built:
        queue.put_nowait(mime)

    async def pump(client: aiosmtplib.SMTP) -> None:
        while not queue.empty():
            await client.send_message(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(pump(c) for c in clients))
    seconds = time.perf_counter() - started
    for client in clients:
        await client.quit()
    print(json.dumps({"per_s": messages / seconds}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.limits")
    sub = parser.add_subparsers(dest="mode", required=True)
    subscribe = sub.add_parser("subscribe")
    subscribe.add_argument("url")
    subscribe.add_argument("channel")
    smtp = sub.add_parser("smtp")
    smtp.add_argument("--port", type=int, required=True)
    smtp.add_argument("--connections", type=int, required=True)
    smtp.add_argument("--messages", type=int, required=True)
    smtp.add_argument("--size", type=int, required=True)
    args = parser.parse_args()
    work = _subscribe(args.url, args.channel) if args.mode == "subscribe" else _feed(
        args.port, args.connections, args.messages, args.size)
    try:
        import uvloop  # the worker runs on uvloop when installed: its limits do too
    except ImportError:
        asyncio.run(work)
    else:
        uvloop.run(work)


if __name__ == "__main__":
    main()
