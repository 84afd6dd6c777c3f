"""`workhorse queues`: per-queue counts, and pause / resume / drain across every process."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.cli.table import print_json, print_table
from app.jobs import build_registry
from app.queue import control, stats
from app.runtime.resources import open_resources
from app.settings import Settings


def add_parsers(sub: Any) -> None:
    q = sub.add_parser("queues", help="queue stats; pause, resume or drain a queue")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=show)
    qsub = q.add_subparsers(dest="action")
    for action, handler, text in (("pause", pause, "stop every process taking jobs from QUEUE"),
                                  ("resume", resume, "undo pause")):
        p = qsub.add_parser(action, help=text)
        p.add_argument("queue")
        p.set_defaults(handler=handler)
    d = qsub.add_parser("drain", help="wait until QUEUE has no waiting and no running jobs")
    d.add_argument("queue")
    d.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300); exit 1 on timeout")
    d.set_defaults(handler=drain)


async def show(settings: Settings, args: argparse.Namespace) -> int:
    names = list(settings.queues.queues)
    async with open_resources(settings, build_registry(settings)) as res:
        current = await stats.read(res.redis, names)
        dlq = await res.dlq.depth()
    if args.json:
        print_json({q: {**s.as_dict(), "deadLetters": dlq.get(q, 0),
                        "concurrency": settings.queues.queue(q).concurrency} for q, s in current.items()})
        return 0
    print_table(
        ["queue", "waiting", "active", "delayed", "completed", "failed", "dead", "paused", "concurrency"],
        [[q, s.waiting, s.active, s.delayed, s.completed, s.failed, dlq.get(q, 0), s.paused,
          settings.queues.queue(q).concurrency] for q, s in current.items()],
    )
    return 0


async def pause(settings: Settings, args: argparse.Namespace) -> int:
    settings.queues.queue(args.queue)
    async with open_resources(settings, build_registry(settings)) as res:
        await control.pause(res.redis, args.queue)
    print(f"paused {args.queue}: running jobs finish, no new ones start")
    return 0


async def resume(settings: Settings, args: argparse.Namespace) -> int:
    settings.queues.queue(args.queue)
    async with open_resources(settings, build_registry(settings)) as res:
        await control.resume(res.redis, args.queue)
    print(f"resumed {args.queue}")
    return 0


async def drain(settings: Settings, args: argparse.Namespace) -> int:
    settings.queues.queue(args.queue)
    first: list[int] = []
    tty = sys.stderr.isatty()

    def progress(s: stats.QueueStats) -> None:
        left = s.waiting + s.active
        if not first:
            first.append(max(left, 1))
        done = max(0, first[0] - left)
        width = 30
        filled = int(width * done / first[0])
        bar = f"[{'#' * filled}{'.' * (width - filled)}] waiting={s.waiting} active={s.active}"
        sys.stderr.write(("\r" + bar) if tty else bar + "\n")
        sys.stderr.flush()

    async with open_resources(settings, build_registry(settings)) as res:
        drained = await control.drain(res.redis, args.queue, timeout_s=args.timeout,
                                      poll_s=0.25 if tty else 2.0, on_progress=progress)
    if tty:
        sys.stderr.write("\n")
    if drained:
        print(f"{args.queue} is drained")
        return 0
    print(f"{args.queue} did not drain within {args.timeout:.0f}s", file=sys.stderr)
    return 1
