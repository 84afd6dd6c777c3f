"""`python -m bench` (`make bench`): every measurement, side by side on one Redis, as one table."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

from app import logs
from bench import families, idle, latency, throughput
from bench.env import BenchEnv, bench_env, peer_versions
from bench.report import Row, render

SECTIONS = ("throughput", "latency", "idle", "families")


@dataclass(frozen=True, slots=True)
class Plan:
    runs: int
    jobs: int
    latency_jobs: int
    idle_window_s: float
    sections: tuple[str, ...]
    families_load_only: bool
    """The families' benchmarks take minutes: a quick run only checks that they load."""


def parse_args(argv: list[str]) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="one run of fewer jobs, families only loaded unless --only families: a smoke run")
    parser.add_argument("--runs", type=int, help="runs per figure (median); default 3, 1 with --quick")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="measure only this (repeatable)")
    args = parser.parse_args(argv)
    sections = tuple(args.only or SECTIONS)
    if args.quick:
        return Plan(args.runs or 1, 1000, 50, 5.0, sections, families_load_only=not args.only)
    # 30 s covers two of the worker's 15 s health writes, so they count at their real rate.
    return Plan(args.runs or 3, 5000, 200, 30.0, sections, families_load_only=False)


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


async def measure(env: BenchEnv, plan: Plan) -> tuple[list[Row], list[float]]:
    rows: list[Row] = []
    lags: list[float] = []
    if "throughput" in plan.sections:
        progress(f"throughput: {plan.jobs} jobs x {plan.runs} runs per system")
        found, lag = await throughput.run(env, jobs=plan.jobs, runs=plan.runs)
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
    if "families" in plan.sections:
        progress("job families")
        rows += await families.run(env, load_only=plan.families_load_only)
    return rows, lags


async def main_async(plan: Plan) -> int:
    async with bench_env() as env:
        rows, lags = await measure(env, plan)
        if lags:
            rows.append(Row("event loop", "worst lag seen by the Workhorse worker", f"{max(lags) * 1000:.1f} ms"))
        notes = [
            f"median of {plan.runs} run(s); Redis {env.redis_url} (idle: a private redis-server); {env.database_note}",
            f"peers from .bench-venv: {await peer_versions(env)}; every system logs at WARNING",
            "throughput: backlog enqueued first (Workhorse: bulk enqueue, 500 per round trip; arq/SAQ: 100 "
            "concurrent calls; Celery: delay(); RQ: enqueue_many), then one worker process drains it",
            "loop lag is sampled every 0.25 s on uvloop, whose clock counts whole milliseconds",
        ]
        print(render(rows, notes))
    return 0  # a missed goal is a figure to read, not a failed command


def main(argv: list[str] | None = None) -> int:
    logs.configure("WARNING")  # stdout carries the table only; warnings go to stderr
    return asyncio.run(main_async(parse_args(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    raise SystemExit(main())
