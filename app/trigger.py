"""python -m app.trigger JOB [--json '{...}'] [--queue Q] [--wait]: enqueue any registered job.

Prints the job id; with --wait, the result (or the error) once the job finishes. --help lists
every job with its payload fields. The payload is validated before anything is enqueued.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from app import logs
from app.cli import run_reporting
from app.cli.table import print_json
from app.config import Settings, SettingsError
from app.errors import AppError
from app.jobs import build_registry
from app.queue.payload import MAX_PAYLOAD_BYTES, loads_limited
from app.queue.registry import ANY_QUEUE, Registry
from app.runtime.startup import open_resources


def describe_fields(registry: Registry) -> str:
    lines = ["jobs:"]
    for spec in registry:
        queue = "any queue (--queue)" if spec.queue == ANY_QUEUE else spec.queue
        lines.append(f"  {spec.name}  [{queue}]  {spec.description}")
        schema = spec.payload.model_json_schema(by_alias=True)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            kind = prop.get("type") or "|".join(a.get("type", "?") for a in prop.get("anyOf", [])) or "any"
            if "enum" in prop:
                kind = "|".join(map(str, prop["enum"]))
            default = "" if name in required else f" = {json.dumps(prop.get('default'))}"
            lines.append(f"      {name}: {kind}{' (required)' if name in required else default}")
    return "\n".join(lines)


def build_parser(registry: Registry) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.trigger", description="Enqueue a registered job.",
        epilog=describe_fields(registry), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("job", help="job name (listed below)")
    parser.add_argument("--json", dest="payload", default="{}",
                        help="payload as a JSON object; - reads it from standard input")
    parser.add_argument("--queue", help="queue for jobs that run on any queue (ping)")
    parser.add_argument("--job-id", help="a fixed job id (a job with this id is enqueued once)")
    parser.add_argument("--defer", type=float, metavar="SECONDS", help="start no sooner than this")
    parser.add_argument("--wait", action="store_true", help="wait for the job and print its result")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to --wait (default 300)")
    return parser


async def trigger(settings: Settings, registry: Registry, args: argparse.Namespace, payload: Any) -> int:
    async with open_resources(settings, registry) as res:
        enqueued = await res.enqueuer.enqueue(args.job, payload, queue=args.queue, job_id=args.job_id,
                                              defer_s=args.defer)
        if enqueued is None:
            print(f"a job with id {args.job_id} is already queued, running or finished recently",
                  file=sys.stderr)
            return 1
        print(enqueued.job_id, flush=True)
        if res.embedded_alone:
            print(f"trigger: no worker runs on the embedded default; the job waits in {settings.workhorse.home} "
                  "for one (make run)", file=sys.stderr)
        if not args.wait:
            return 0
        handle = res.enqueuer.job(enqueued.job_id, enqueued.queue)
        try:
            await handle.wait(timeout_s=args.timeout, poll_delay=0.05)
        except TimeoutError as exc:
            print(f"trigger: {exc}", file=sys.stderr)
            return 1
        outcome = await handle.describe()
        print_json(outcome)
        return 0 if outcome.get("success") else 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = Settings.load()
    except SettingsError as exc:
        print(f"trigger: {exc}", file=sys.stderr)
        return 2
    registry = build_registry(settings)
    args = build_parser(registry).parse_args(argv)
    logs.configure(settings.log.level if settings.log.level.upper() != "INFO" else "WARNING", settings.log.format)
    try:
        text = sys.stdin.read(MAX_PAYLOAD_BYTES + 1) if args.payload == "-" else args.payload
        payload = loads_limited(args.job, text)
        # Validate before connecting: a bad payload never waits for Redis.
        spec = registry.spec(args.job)
        if spec.queue == ANY_QUEUE and args.queue is None:
            args.queue = registry.default_queue
            print(f"trigger: {args.job} runs on any queue; using {args.queue} (choose with --queue)", file=sys.stderr)
        registry.validate(args.job, payload, args.queue)
    except (AppError, SettingsError) as exc:
        print(f"trigger: {exc}", file=sys.stderr)
        return 2
    return run_reporting("trigger", trigger(settings, registry, args, payload))


if __name__ == "__main__":
    raise SystemExit(main())
