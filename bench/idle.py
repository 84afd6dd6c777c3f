"""What an idle worker costs: its resident memory and the Redis commands it sends per second.

Measured against a private redis-server, so other clients of the shared Redis do not count.
Workhorse runs as deployed (seven queues, cron and the sidecar in one process); arq runs with
its defaults, once serving one queue and once serving seven (one Worker per queue).
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import replace
from pathlib import Path

from bench.env import BenchEnv, command_counts, commands_processed, peer_argv, peer_environ
from bench.redis_server import private_redis
from bench.report import Row
from bench.workhorse import running

RSS_GOAL_MB = 150.0
SETTLE_S = 2.0


async def commands_per_s(url: str, window_s: float) -> float:
    before = await commands_processed(url)
    await asyncio.sleep(window_s)
    after = await commands_processed(url)
    return (after - before - 1) / window_s  # minus the first INFO itself


async def busiest_commands(url: str, window_s: float) -> tuple[float, str]:
    """commands/s over the window, and the commands behind them (per s, busiest first)."""
    before = await command_counts(url)
    load = await commands_per_s(url, window_s)
    after = await command_counts(url)
    grown = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    grown["info"] = grown.get("info", 0) - 3  # ours
    top = sorted(((n, c) for n, c in grown.items() if c > 0), key=lambda nc: -nc[1])[:4]
    return load, ", ".join(f"{name.upper()} {count / window_s:.1f}" for name, count in top)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def workhorse_idle(env: BenchEnv, window_s: float) -> tuple[float, float, str]:
    """(commands/s, RSS MB, the commands behind the load) of the full process, idle."""
    async with private_redis() as url, running(replace(env, redis_url=url)) as worker:
        await worker.wait_ready()
        await asyncio.sleep(SETTLE_S)  # start-up writes (health keys, paused set read) settle
        load, behind = await busiest_commands(url, window_s)
        return load, worker.rss_bytes() / 2**20, behind


async def arq_idle(env: BenchEnv, queues: int, window_s: float) -> tuple[float, float]:
    async with private_redis() as url:
        proc = await asyncio.create_subprocess_exec(
            *peer_argv(env, "arq_peer.py", "worker", "--queues", str(queues)),
            env=peer_environ(replace(env, redis_url=url)),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            # arq has no readiness signal; its first health-check write comes with its first poll.
            await asyncio.sleep(SETTLE_S + 1)
            load = await commands_per_s(url, window_s)
            return load, rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()


async def run(env: BenchEnv, *, window_s: float) -> list[Row]:
    ours_load, ours_rss, behind = await workhorse_idle(env, window_s)
    arq1_load, arq1_rss = await arq_idle(env, 1, window_s)
    arq7_load, arq7_rss = await arq_idle(env, 7, window_s)
    label = f"idle ({window_s:.0f} s)"
    return [
        Row(label, "Workhorse RSS (7 queues + sidecar)", f"{ours_rss:.0f} MB", f"<= {RSS_GOAL_MB:.0f} MB",
            ours_rss <= RSS_GOAL_MB),
        Row(label, "Workhorse Redis load (7 queues)", f"{ours_load:.1f} commands/s ({behind})",
            f"<= arq defaults, 1 queue: {arq1_load:.1f}/s", ours_load <= arq1_load),
        Row(label, "arq defaults, 1 queue", f"{arq1_load:.1f} commands/s, RSS {arq1_rss:.0f} MB"),
        Row(label, "arq defaults, 7 queues (7 Workers)", f"{arq7_load:.1f} commands/s, RSS {arq7_rss:.0f} MB"),
    ]
