"""Health under load: how long `/health/live` takes to answer while the worker is busy, and
whether a burst of requests is answered in full.

A supervisor (systemd's watchdog, a load balancer) reads a slow answer as a dead process, so the
sidecar must answer while OCR keeps both cores busy and while a backlog of pings drains. One
client, in a process of its own (`python -m bench.health URL`), asks every 10 ms on a
kept-alive connection, timing each answer; the same probe on the
idle worker, in the same run, is the floor the loaded figures are held against.

A web app's burst (`python -m bench.burst`, a process of its own): 1,000 concurrent
`GET /health/live`, then 500 concurrent `POST /api/v1/jobs`, each on a connection of its own
against the default SIDECAR_MAX_CONNECTIONS; the goal is that none is closed without an answer.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable
from contextlib import suppress
from typing import Any

import aiohttp
import asyncpg

from app.config import PROJECT_ROOT
from app.db import migrate
from app.queue.enqueue import JobRequest
from bench.env import BenchEnv, clean_environ, flush, run_json
from bench.ocr import PARALLEL, a4_page, add_documents, process_all
from bench.peers.common import drain_times
from bench.report import Row, percentile
from bench.workhorse import THROUGHPUT_QUEUE, Worker, enqueuer, running

P99_GOAL_MS = 50.0
BURST_TOKEN = "bench-burst-token"
_PING = json.dumps({"name": "ping", "queue": THROUGHPUT_QUEUE})
PROBE_EVERY_S = 0.01
IDLE_PROBE_S = 2.0
_BATCH = 500


async def probe_while(worker: Worker, load: Awaitable[object]) -> list[float]:
    """Answer times (ms) of /health/live, asked every 10 ms until `load` completes.

    The asking is done by a process of its own, as a supervisor would: the bench process itself
    is busy with the load (enqueueing, polling), and its own stalls must not count as the
    worker's."""
    url = f"http://127.0.0.1:{worker.port}/health/live"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.health", url, env=clean_environ({}), cwd=PROJECT_ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            await proc.stdout.readline()  # "ready": its session is open
        await load  # its failure is the run's
        proc.stdin.write(b"stop\n")
        await proc.stdin.drain()
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    finally:
        with suppress(ProcessLookupError):
            proc.kill()
    if proc.returncode != 0:
        raise RuntimeError(f"the /health/live probe failed: {err.decode()[-1000:]}")
    times: list[float] = json.loads(out.decode().strip().splitlines()[-1])["times_ms"]
    return times


async def _probe(url: str) -> None:
    """The probe process: GET `url` every PROBE_EVERY_S on one kept-alive connection until a
    line arrives on stdin, then print the answer times as JSON."""
    loop = asyncio.get_running_loop()
    stop = loop.run_in_executor(None, sys.stdin.readline)
    times: list[float] = []
    async with aiohttp.ClientSession() as http:
        print("ready", flush=True)
        while not stop.done():
            started = time.perf_counter()
            async with http.get(url) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"/health/live answered {response.status}")
            times.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(PROBE_EVERY_S)
    print(json.dumps({"times_ms": times}), flush=True)


async def while_pings_drain(env: BenchEnv, pings: int) -> tuple[list[float], list[float]]:
    """(idle answers, answers while `pings` drain through one queue at concurrency 20)."""
    await flush(env.redis_url)
    extra = {THROUGHPUT_QUEUE.upper().replace("-", "_") + "_CONCURRENCY": "20"}
    async with enqueuer(env) as enq, running(env, [THROUGHPUT_QUEUE], **extra) as worker:
        await worker.wait_ready()
        idle = await probe_while(worker, asyncio.sleep(IDLE_PROBE_S))
        requests = [JobRequest("ping", queue=THROUGHPUT_QUEUE) for _ in range(pings)]

        async def drain() -> None:
            for start in range(0, pings, _BATCH):
                await enq.enqueue_many(requests[start:start + _BATCH])
            await drain_times(lambda: enq.redis.zcard(THROUGHPUT_QUEUE), pings, timeout_s=300)

        return idle, await probe_while(worker, drain())


async def while_ocr_runs(env: BenchEnv, pages: int) -> list[float]:
    """Answers while `pages` A4 pages go through OCR, PARALLEL at a time (both cores busy)."""
    await flush(env.redis_url)
    extra = {"OCR_WORKERS": str(PARALLEL), "DOCUMENT_PROCESSING_CONCURRENCY": str(PARALLEL + 1)}
    async with running(env, ["document-processing"], **extra) as worker:
        await worker.wait_ready()
        db = await asyncpg.connect(env.database_url)
        try:
            scans = {f"bench-health-{n}": a4_page(n) for n in range(pages)}
            await add_documents(db, worker, scans)
            return await probe_while(worker, process_all(env, db, list(scans)))
        finally:
            await db.execute("DELETE FROM documents WHERE id LIKE 'bench-health-%'")
            await db.close()


def _figure(times: list[float]) -> str:
    return (f"p50 {percentile(times, 50):.1f} ms, p99 {percentile(times, 99):.1f} ms, "
            f"max {max(times):.1f} ms ({len(times)} answers)")


async def _burst(port: int, n: int, method: str, path: str, body: str = "") -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.burst", str(port), str(n), method, path, body, BURST_TOKEN]
    return await run_json(argv, clean_environ({}), timeout_s=120)


async def bursts(env: BenchEnv, health_n: int, post_n: int) -> list[Row]:
    """The two bursts against a worker with the default connection limit."""
    await flush(env.redis_url)
    async with running(env, [THROUGHPUT_QUEUE], API_TOKEN=BURST_TOKEN) as worker:
        await worker.wait_ready()
        rows = []
        for label, answer in ((f"{health_n:,} concurrent GET /health/live",
                               await _burst(worker.port, health_n, "GET", "/health/live")),
                              (f"{post_n:,} concurrent POST /api/v1/jobs",
                               await _burst(worker.port, post_n, "POST", "/api/v1/jobs", _PING))):
            statuses: dict[str, int] = answer["statuses"]
            dropped = sum(n for status, n in statuses.items() if not status.isdigit())
            times = answer["times_ms"]
            answers = ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))
            figure = (f"{dropped} closed without a reply ({answers}); p50 {percentile(times, 50):.0f} ms, "
                      f"p99 {percentile(times, 99):.0f} ms")
            rows.append(Row("sidecar burst", label, figure, "0 closed without a reply", dropped == 0))
        return rows


async def run(env: BenchEnv, *, pings: int, pages: int) -> list[Row]:
    await migrate.migrate(env.database_url)
    burst_rows = await bursts(env, 1000, 500)
    idle, draining = await while_pings_drain(env, pings)
    ocr = await while_ocr_runs(env, pages)
    floor = percentile(idle, 99)
    label = "GET /health/live"
    rows = [Row(label, "idle worker (the floor)", _figure(idle))]
    for name, times in ((f"while {pings:,} pings drain", draining),
                        (f"while OCR of {pages} pages fills {PARALLEL} cores", ocr)):
        p99 = percentile(times, 99)
        rows.append(Row(label, name, f"p99 {p99 / floor:.1f}x idle; {_figure(times)}",
                        f"p99 < {P99_GOAL_MS:.0f} ms", p99 < P99_GOAL_MS))
    return [*rows, *burst_rows]


if __name__ == "__main__":
    asyncio.run(_probe(sys.argv[1]))
