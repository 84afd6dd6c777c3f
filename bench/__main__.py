"""`python -m bench` (`make bench`): every measurement, side by side on one Redis, as one table."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable
from dataclasses import dataclass

from app import logs
from bench import families, health, idle, latency, throughput
from bench.env import BenchEnv, bench_env, peer_versions
from bench.report import Row, render

SECTIONS = ("throughput", "latency", "idle", "health", "families")


@dataclass(frozen=True, slots=True)
class Plan:
    runs: int
    jobs: int
    latency_jobs: int
    idle_window_s: float
    health_pings: int
    health_pages: int
    sections: tuple[str, ...]
    quick: bool
    """Smaller loads everywhere (a smoke run under 3 minutes): one run each, the SLA scan and
    the reminders at a tenth of their size, OCR on 4 pages, BullMQ only at concurrency 20."""


def parse_args(argv: list[str]) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="one run of fewer jobs, smaller families: a smoke run (< 3 min)")
    parser.add_argument("--runs", type=int, help="runs per figure (median); default 3, 1 with --quick")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="measure only this (repeatable)")
    args = parser.parse_args(argv)
    sections = tuple(args.only or SECTIONS)
    if args.quick:
        return Plan(args.runs or 1, 1000, 50, 5.0, 5000, 4, sections, quick=True)
    # 30 s covers two of the worker's 15 s health writes, so they count at their real rate.
    return Plan(args.runs or 3, 5000, 200, 30.0, 5000, 12, sections, quick=False)


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


async def measure(env: BenchEnv, plan: Plan) -> tuple[list[Row], list[float]]:
    rows: list[Row] = []
    lags: list[float] = []
    if "throughput" in plan.sections:
        progress(f"throughput: {plan.jobs} jobs x {plan.runs} runs per system")
        found, lag = await throughput.run(env, jobs=plan.jobs, runs=plan.runs, sweep=not plan.quick)
        rows += found
        lags.append(lag)
    if "latency" in plan.sections:
        progress(f"pickup latency: {plan.latency_jobs} jobs x {plan.runs} runs per system")
        found, lag = await latency.run(env, jobs=plan.latency_jobs, runs=plan.runs)
        rows += found
        lags.append(lag)
    if "idle" in plan.sections:
        progress(f"idle: {plan.idle_window_s:.0f} s windows")
        rows += await idle.run(env, window_s=plan.idle_window_s)
    if "health" in plan.sections:
        progress(f"health under load: {plan.health_pings} pings, then OCR of {plan.health_pages} pages")
        rows += await _or_why("health", health.run(env, pings=plan.health_pings, pages=plan.health_pages))
    if "families" in plan.sections:
        progress("job families" + (" (smaller: --quick)" if plan.quick else ""))
        rows += await families.run(env, quick=plan.quick)
    return rows, lags


async def _or_why(section: str, rows: Awaitable[list[Row]]) -> list[Row]:
    """A section's rows, or one row saying why it has none: the rest of the table still prints."""
    try:
        return await rows
    except Exception as exc:  # a failed section is a figure we could not take, not a crash
        return [Row(section, "could not measure", f"{type(exc).__name__}: {str(exc)[:200]}")]


async def main_async(plan: Plan) -> int:
    async with bench_env() as env:
        rows, lags = await measure(env, plan)
        if lags:
            rows.append(Row("event loop", "worst lag seen by the Workhorse worker", f"{max(lags) * 1000:.1f} ms"))
        notes = [
            f"median of {plan.runs} run(s); {env.redis_note}; {env.database_note}",
            f"peers from .bench-venv: {await peer_versions(env)}; every system logs at WARNING",
            "throughput: backlog enqueued first (Workhorse: bulk enqueue, 500 per round trip; arq/SAQ/Taskiq: 100 "
            "concurrent calls; Celery: delay(); Dramatiq: send(); RQ: enqueue_many; BullMQ: addBulk, 500 a call), "
            "then the worker drains it; commands/job = the server's total_commands_processed from worker start to "
            "last job, less the bench's own polls, / jobs (commands that Lua scripts call count too)",
            "ratios are the median of each run's ratio (its two figures taken back to back); the machine is "
            "shared and busy unless said otherwise, so read the ratios, not the absolute figures",
            "loop lag is sampled every 0.25 s on uvloop, whose clock counts whole milliseconds",
        ]
        print(render(rows, notes))
    return 0  # a missed goal is a figure to read, not a failed command


def main(argv: list[str] | None = None) -> int:
    logs.configure("WARNING")  # stdout carries the table only; warnings go to stderr
    return asyncio.run(main_async(parse_args(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    raise SystemExit(main())
