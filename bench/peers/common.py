# mypy: ignore-errors
"""What every peer script shares: worker subprocesses, drain timing and commands, latency pacing,
the answer.

The Python peer scripts run under the interpreter of their own environment in .bench-venv
(bench/peer_envs.py; the peers are not project dependencies), so they import only the standard
library, redis and the peer they drive. BullMQ's script (Node) follows the same protocol.
"""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
CHUNK = 100
"""Concurrent enqueue calls of the async clients (arq, SAQ)."""
STOP_GRACE_S = 30.0
"""How long a worker may take to stop on SIGTERM before it is killed."""


def answer(**fields):
    print(json.dumps(fields), flush=True)


def start_worker(script, *args):
    """The same script in `worker` mode, in its own process (as it runs in production) and its own
    process group, so that what it forks is stopped with it."""
    return subprocess.Popen([sys.executable, script, "worker", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=sys.stderr, start_new_session=True)


def stop_worker(proc, grace_s=STOP_GRACE_S):
    """SIGTERM, as a supervisor stops it, and SIGKILL after `grace_s`; then SIGKILL to whatever is
    left of its process group. A child that outlives its parent keeps the driver's stderr open,
    and the harness reads that to its end."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


async def drain_times(remaining: Callable[[], Awaitable[int]], jobs: int,
                      timeout_s: float = 600) -> tuple[float, float]:
    """perf_counter times when the first and the last of `jobs` finished (polled every 5 ms).

    Shared with bench/workhorse.py, which imports it from here: this module needs only the
    standard library, so both interpreters can load it."""
    first: float | None = None
    async with asyncio.timeout(timeout_s):
        while True:
            left = await remaining()
            now = time.perf_counter()
            if first is None and left < jobs:
                first = now
            if left == 0:
                assert first is not None
                return first, now
            await asyncio.sleep(0.005)


class Counted:
    """A drain's `remaining` that counts its calls: each sends `per_call` Redis commands, which
    are the bench's own and so are left out of the system's commands per job."""

    def __init__(self, remaining: Callable[[], Awaitable[int]], per_call: int = 1) -> None:
        self.remaining = remaining
        self.per_call = per_call
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        return await self.remaining()

    @property
    def commands(self) -> int:
        return self.calls * self.per_call


async def total_commands(redis) -> int:
    """The server's `total_commands_processed` (it counts this INFO only after answering)."""
    return int((await redis.info("stats"))["total_commands_processed"])


async def commands_since(redis, before: int, polls: Counted) -> int:
    """Commands the system sent since `before` (a `total_commands`), the bench's own INFO and
    polls left out: the worker's start-up, claiming, results and stats all count."""
    return await total_commands(redis) - before - polls.commands - 1


async def paced(enqueue_one, jobs, interval_s):
    """Enqueue `jobs` jobs `interval_s` apart; [(handle, wall time just before the call)]."""
    out = []
    start = time.perf_counter()
    for i in range(jobs):
        delay = start + i * interval_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.time()
        out.append((await enqueue_one(), sent))
    return out


def throughput_answer(jobs, enqueue_s, first, last, commands):
    answer(jobs=jobs, enqueue_per_s=jobs / enqueue_s, process_per_s=(jobs - 1) / (last - first),
           commands_per_job=commands / jobs)


def wait_for_signal():
    """An event set on SIGTERM/SIGINT, for async workers that stop on their own terms."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run_peer(modes, *options):
    """A peer script's entry point: `MODE --jobs N [--interval-ms MS] [options]`, then the mode's
    function, awaited when it is a coroutine function (sync workers such as Dramatiq's and
    Celery's run their own loop). `options` are (flag, type, default) of the script's own."""
    import argparse
    import inspect

    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=list(modes))
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--interval-ms", type=float, default=20)
    for flag, kind, default in options:
        parser.add_argument(flag, type=kind, default=default)
    args = parser.parse_args()
    run = modes[args.mode]
    if inspect.iscoroutinefunction(run):
        asyncio.run(run(args))
    else:
        run(args)


async def drain_and_answer(redis, polls: Counted, script, worker_args, jobs, enqueue_s, stop_grace_s=STOP_GRACE_S):
    """The backlog protocol's second half, the same for every peer: count the server's commands,
    start the peer's worker, time the drain through `polls`, stop the worker, answer."""
    before = await total_commands(redis)
    proc = start_worker(script, *worker_args)
    try:
        first, last = await drain_times(polls, jobs)
        commands = await commands_since(redis, before, polls)
    finally:
        stop_worker(proc, stop_grace_s)
    throughput_answer(jobs, enqueue_s, first, last, commands)
