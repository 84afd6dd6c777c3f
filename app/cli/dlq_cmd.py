"""`workhorse dlq`: list, show, retry and purge dead letters."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from typing import Any

from app.cli.table import print_json, print_table
from app.config import Settings
from app.jobs import build_registry
from app.queue.dead_letters import DeadLetter, RetryOutcome
from app.runtime.startup import open_resources

_AGE = re.compile(r"^(\d+)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_age(text: str) -> dt.timedelta:
    """'30d', '12h', '90m' ... as a timedelta."""
    m = _AGE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age like 30d, 12h or 90m")
    return dt.timedelta(seconds=int(m.group(1)) * _UNIT_S[m.group(2)])


def letter_id(text: str) -> int:
    """A dead letter id: a positive integer that fits PostgreSQL's bigint."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a dead letter id (a positive integer)") from None
    if not 0 < value < 2**63:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a dead letter id (a positive integer)")
    return value


def add_parsers(sub: Any) -> None:
    d = sub.add_parser("dlq", help="dead-letter queue: list, show, retry, purge")
    dsub = d.add_subparsers(dest="action", required=True)
    ls = dsub.add_parser("list", help="dead letters, newest first")
    ls.add_argument("--queue")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=list_)
    up = dsub.add_parser("unpark", help="move dead letters parked in Redis (PostgreSQL refused them) into the table")
    up.set_defaults(handler=unpark)
    sh = dsub.add_parser("show", help="one dead letter with payload and traceback")
    sh.add_argument("id", type=letter_id)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(handler=show)
    rt = dsub.add_parser("retry", help="enqueue again with a fresh attempt count")
    target = rt.add_mutually_exclusive_group(required=True)
    target.add_argument("id", type=letter_id, nargs="?")
    target.add_argument("--all", action="store_true", help="every dead letter (of --queue)")
    rt.add_argument("--queue")
    rt.add_argument("--json", action="store_true")
    rt.set_defaults(handler=retry)
    pg = dsub.add_parser("purge", help="delete dead letters (say which: --queue, --older-than, --all)")
    pg.add_argument("--queue")
    pg.add_argument("--older-than", type=parse_age, help="e.g. 30d, 12h")
    pg.add_argument("--all", action="store_true", help="required to purge with no other filter")
    pg.add_argument("--json", action="store_true")
    pg.set_defaults(handler=purge)


def _summary(d: DeadLetter) -> dict[str, Any]:
    return {"id": d.id, "jobId": d.job_id, "job": d.job_name, "queue": d.queue, "attempts": d.attempts,
            "errorClass": d.error_class, "error": d.error_message, "lastFailedAt": d.last_failed_at,
            "status": d.status}


async def list_(settings: Settings, args: argparse.Namespace) -> int:
    async with open_resources(settings, build_registry(settings)) as res:
        letters = await res.dlq.list(queue=args.queue, limit=args.limit)
        parked = [p for p in await res.dlq.parked() if args.queue in (None, p.get("queue"))]
    if args.json:
        print_json([_summary(d) for d in letters] + [_parked_summary(p) for p in parked])
        return 0
    print_table(["id", "queue", "job", "attempts", "error class", "error", "last failed"],
                [[d.id, d.queue, d.job_name, d.attempts, d.error_class, d.error_message,
                  d.last_failed_at.strftime("%Y-%m-%d %H:%M:%S")] for d in letters])
    if parked:
        print(f"\n{len(parked)} dead letter(s) parked in Redis because PostgreSQL refused them "
              "(`workhorse dlq unpark` moves them into the table):")
        print_table(["job id", "queue", "job", "error", "store error"],
                    [[p.get("job_id"), p.get("queue"), p.get("job_name"), p.get("error_message"), p.get("storeError")]
                     for p in parked])
    return 0


def _parked_summary(p: dict[str, Any]) -> dict[str, Any]:
    return {"id": None, "jobId": p.get("job_id"), "job": p.get("job_name"), "queue": p.get("queue"),
            "attempts": p.get("attempts"), "errorClass": p.get("error_class"), "error": p.get("error_message"),
            "lastFailedAt": p.get("parkedAt"), "status": "PARKED", "storeError": p.get("storeError")}


async def unpark(settings: Settings, args: argparse.Namespace) -> int:
    async with open_resources(settings, build_registry(settings)) as res:
        moved = await res.dlq.unpark()
    print(f"moved {moved} parked dead letter(s) into the table")
    return 0


async def show(settings: Settings, args: argparse.Namespace) -> int:
    async with open_resources(settings, build_registry(settings)) as res:
        d = await res.dlq.get(args.id)
    full = {**_summary(d), "payload": d.payload, "rawPayload": d.raw_payload, "traceback": d.traceback,
            "firstFailedAt": d.first_failed_at, "retriedAt": d.retried_at, "retriedJobId": d.retried_job_id}
    if args.json:
        print_json(full)
        return 0
    for key, value in full.items():
        if key != "traceback":
            print(f"{key:>14}: {value}")
    if d.traceback:
        print("\n" + d.traceback.rstrip())
    return 0


async def retry(settings: Settings, args: argparse.Namespace) -> int:
    """Retry one letter, or --all of them each on its own: one line per letter (enqueued as
    job J, or refused and why); exit 1 when any was refused (those stay DEAD)."""
    async with open_resources(settings, build_registry(settings)) as res:
        if args.all:
            done = await res.dlq.retry_all(res.enqueuer, queue=args.queue)
        else:
            done = [RetryOutcome(args.id, await res.dlq.retry(args.id, res.enqueuer))]
    refused = [o for o in done if o.refused is not None]
    if args.json:
        print_json([{"id": o.dead_letter_id, "jobId": o.job_id, "refused": o.refused} for o in done])
    else:
        for o in done:
            if o.refused is None:
                print(f"dead letter {o.dead_letter_id} enqueued again as job {o.job_id}")
            else:
                print(f"dead letter {o.dead_letter_id} refused (stays DEAD): {o.refused}")
        if not done:
            print("nothing to retry")
        elif args.all:
            print(f"retried {len(done) - len(refused)} of {len(done)}; refused {len(refused)}")
    return 1 if refused else 0


async def purge(settings: Settings, args: argparse.Namespace) -> int:
    if not (args.queue or args.older_than or args.all):
        print("workhorse: say what to purge: --queue Q, --older-than AGE, or --all")
        return 2
    async with open_resources(settings, build_registry(settings)) as res:
        n = await res.dlq.purge(queue=args.queue, older_than=args.older_than)
    if args.json:
        print_json({"purged": n})
    else:
        print(f"purged {n} dead letter(s)")
    return 0
