"""`workhorse queues`: per-queue counts with a total, and pause / resume / drain of one queue,
several, or --all, across every process."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.cli.table import print_json, print_table
from app.config import Settings, SettingsError, UnknownQueue
from app.jobs import build_registry
from app.queue import control, stats
from app.runtime.startup import open_resources

# Counted columns of `queues`, summed into the total row.
_COUNTED = ("waiting", "active", "delayed", "completed", "failed", "deadLetters", "concurrency")


def add_parsers(sub: Any) -> None:
    q = sub.add_parser("queues", help="queue stats; pause, resume or drain queues")
    q.add_argument("--json", action="store_true", help='JSON: one object per queue, and "total"')
    q.set_defaults(handler=show)
    qsub = q.add_subparsers(dest="action")
    for action, handler, text in (("pause", pause, "stop every process taking jobs from QUEUE(s)"),
                                  ("resume", resume, "undo pause")):
        p = qsub.add_parser(action, help=text)
        _queue_arguments(p)
        p.set_defaults(handler=handler)
    d = qsub.add_parser("drain", help="wait until the QUEUE(s) have no waiting and no running jobs")
    _queue_arguments(d)
    d.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300); exit 1 on timeout")
    d.set_defaults(handler=drain)


def _queue_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queues", nargs="*", metavar="QUEUE", help="one or more queue names")
    parser.add_argument("--all", action="store_true", help="every queue of the queue table")


def chosen_queues(settings: Settings, args: argparse.Namespace) -> list[str]:
    """The queues named on the command line (each checked), or all of them with --all."""
    if args.all and args.queues:
        raise SettingsError("name queues or give --all, not both")
    if args.all:
        return list(settings.queues.queues)
    if not args.queues:
        raise SettingsError("name at least one queue, or give --all")
    for name in args.queues:
        if name not in settings.queues.queues:  # the name is cut short: it may be anything at all
            raise UnknownQueue(f"unknown queue {name[:80]!r}; known: {', '.join(settings.queues.queues)}")
    return list(dict.fromkeys(args.queues))


async def show(settings: Settings, args: argparse.Namespace) -> int:
    names = list(settings.queues.queues)
    async with open_resources(settings, build_registry(settings)) as res:
        current = await stats.read(res.redis, names)
        dlq = await res.dlq.depth()
    rows = {q: {**s.as_json(), "deadLetters": dlq.get(q, 0), "concurrency": settings.queues.queue(q).concurrency}
            for q, s in current.items()}
    total = {c: sum(int(r[c]) for r in rows.values()) for c in _COUNTED}
    if args.json:
        print_json({**rows, "total": total})
        return 0
    print_table(
        ["queue", "waiting", "active", "delayed", "completed", "failed", "dead", "paused", "concurrency"],
        [[q, r["waiting"], r["active"], r["delayed"], r["completed"], r["failed"], r["deadLetters"], r["paused"],
          r["concurrency"]] for q, r in rows.items()]
        + [["total", *(total[c] for c in _COUNTED[:-1]), "-", total["concurrency"]]],
    )
    return 0


async def pause(settings: Settings, args: argparse.Namespace) -> int:
    names = chosen_queues(settings, args)
    async with open_resources(settings, build_registry(settings)) as res:
        for name in names:
            await control.pause(res.redis, name)
    print(f"paused {', '.join(names)}: running jobs finish, no new ones start")
    return 0


async def resume(settings: Settings, args: argparse.Namespace) -> int:
    names = chosen_queues(settings, args)
    async with open_resources(settings, build_registry(settings)) as res:
        for name in names:
            await control.resume(res.redis, name)
    print(f"resumed {', '.join(names)}")
    return 0


async def drain(settings: Settings, args: argparse.Namespace) -> int:
    names = chosen_queues(settings, args)
    first: list[int] = []
    tty = sys.stderr.isatty()

    def progress(current: list[stats.QueueStats]) -> None:
        waiting, active = sum(s.waiting for s in current), sum(s.active for s in current)
        if not first:
            first.append(max(waiting + active, 1))
        done = max(0, first[0] - waiting - active)
        width = 30
        filled = int(width * done / first[0])
        bar = f"[{'#' * filled}{'.' * (width - filled)}] waiting={waiting} active={active}"
        sys.stderr.write(("\r" + bar) if tty else bar + "\n")
        sys.stderr.flush()

    async with open_resources(settings, build_registry(settings)) as res:
        drained = await control.drain(res.redis, names, timeout_s=args.timeout,
                                      poll_s=0.25 if tty else 2.0, on_progress=progress)
    if tty:
        sys.stderr.write("\n")
    label = ", ".join(names)
    if drained:
        print(f"{label} {'is' if len(names) == 1 else 'are'} drained")
        return 0
    print(f"{label} did not drain within {args.timeout:.0f}s", file=sys.stderr)
    return 1
