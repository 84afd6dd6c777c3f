"""`workhorse jobs`: one job's status, progress and result; jobs running past their timeout."""

from __future__ import annotations

import argparse
import time
from typing import Any

from app.cli.table import print_json, print_table
from app.config import Settings
from app.jobs import build_registry
from app.queue import stats
from app.runtime.startup import open_resources


def add_parsers(sub: Any) -> None:
    j = sub.add_parser("jobs", help="inspect jobs")
    jsub = j.add_subparsers(dest="action", required=True)
    sh = jsub.add_parser("show", help="status, progress and result of one job")
    sh.add_argument("job_id")
    sh.add_argument("--queue", help="the job's queue (default: search every queue)")
    sh.set_defaults(handler=show)
    st = jsub.add_parser("stuck", help="jobs running longer than their queue's timeout")
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=stuck)


async def show(settings: Settings, args: argparse.Namespace) -> int:
    async with open_resources(settings, build_registry(settings)) as res:
        print_json(await res.enqueuer.job(args.job_id, args.queue).describe())
    return 0


async def stuck(settings: Settings, args: argparse.Namespace) -> int:
    names = list(settings.queues.queues)
    async with open_resources(settings, build_registry(settings)) as res:
        now = int(time.time() * 1000)
        late = [r for r in await stats.running_jobs(res.redis, names)
                if now - r.started_ms > settings.queues.queue(r.queue).timeout_s * 1000]
    rows = [{"jobId": r.job_id, "queue": r.queue, "process": r.process,
             "runningS": round((now - r.started_ms) / 1000, 1),
             "timeoutS": settings.queues.queue(r.queue).timeout_s} for r in late]
    if args.json:
        print_json(rows)
    elif rows:
        print_table(["job id", "queue", "process", "running s", "timeout s"], [list(r.values()) for r in rows])
    else:
        print("no job runs longer than its timeout")
    return 0
