"""A stock arq client, driven line by line: runs under the arq client's own virtual environment
(arq 0.28 pins redis-py < 6, so it cannot share the project's), never imports the project.

    python arq_driver.py REDIS_URL [DESERIALIZER_FILE]

Each stdin line is a JSON command; each answer is one JSON line on stdout. The client is created
as arq's documentation says for JSON: `create_pool(settings, job_serializer=json.dumps-to-bytes,
job_deserializer=...)`, with `json.loads` or the README's `job_deserializer` (DESERIALIZER_FILE,
a Python file defining it), whichever the command names.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import runpy
import sys
import time
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job, JobResult, deserialize_job, deserialize_result, serialize_job
from arq.worker import async_check_health


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _ms(when: dt.datetime | None) -> int | None:
    return None if when is None else round(when.timestamp() * 1000)


def _info(info: Any) -> dict[str, Any] | None:
    if info is None:
        return None
    out = {"function": info.function, "args": list(info.args), "kwargs": info.kwargs, "job_try": info.job_try,
           "enqueue_ms": _ms(info.enqueue_time), "score": info.score}
    if isinstance(info, JobResult):
        out.update(success=info.success, result=_plain(info.result), start_ms=_ms(info.start_time),
                   finish_ms=_ms(info.finish_time), queue=info.queue_name, job_id=info.job_id)
    return out


def _plain(value: Any) -> Any:
    return {"exception": type(value).__name__, "text": str(value)} if isinstance(value, BaseException) else value


class Driver:
    def __init__(self, url: str, deserializer_file: str | None) -> None:
        self.url = url
        self.deserializers: dict[str, Any] = {"plain": json.loads}
        if deserializer_file:
            self.deserializers["readme"] = runpy.run_path(deserializer_file)["job_deserializer"]
        self.pools: dict[str, ArqRedis] = {}

    async def pool(self, deserializer: str = "plain") -> ArqRedis:
        if deserializer not in self.pools:
            self.pools[deserializer] = await create_pool(RedisSettings.from_dsn(self.url), job_serializer=_dumps,
                                                         job_deserializer=self.deserializers[deserializer])
        return self.pools[deserializer]

    async def job(self, c: dict[str, Any]) -> Job:
        pool = await self.pool(c.get("deserializer", "plain"))
        return Job(c["job_id"], pool, _queue_name=c["queue"], _deserializer=pool.job_deserializer)

    async def enqueue(self, c: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {"_queue_name": c["queue"]}
        if c.get("job_id"):
            options["_job_id"] = c["job_id"]
        if c.get("defer_by_s") is not None:
            options["_defer_by"] = dt.timedelta(seconds=c["defer_by_s"])
        if c.get("defer_until_ms") is not None:
            options["_defer_until"] = dt.datetime.fromtimestamp(c["defer_until_ms"] / 1000, dt.UTC)
        sent_ms = time.time() * 1000
        job = await (await self.pool()).enqueue_job(c["function"], *c.get("args", []), **options)
        return {"job_id": None if job is None else job.job_id, "sent_ms": sent_ms}

    async def status(self, c: dict[str, Any]) -> dict[str, Any]:
        return {"status": (await (await self.job(c)).status()).value}

    async def info(self, c: dict[str, Any]) -> dict[str, Any]:
        return {"info": _info(await (await self.job(c)).info())}

    async def result(self, c: dict[str, Any]) -> dict[str, Any]:
        job = await self.job(c)
        try:
            return {"result": await job.result(timeout=c.get("timeout_s", 10), poll_delay=0.05)}
        except BaseException as exc:  # what the caller sees is the point: CancelledError included
            return {"raised": type(exc).__name__, "text": str(exc)}

    async def abort(self, c: dict[str, Any]) -> dict[str, Any]:
        job = await self.job(c)
        try:
            return {"aborted": await job.abort(timeout=c.get("timeout_s", 10), poll_delay=0.05)}
        except BaseException as exc:
            return {"raised": type(exc).__name__, "text": str(exc)}

    async def serialize_job(self, c: dict[str, Any]) -> dict[str, Any]:
        record = serialize_job(c["function"], tuple(c["args"]), c["kwargs"], None, c["enqueue_ms"], serializer=_dumps)
        return {"record": record.decode()}

    async def read_job(self, c: dict[str, Any]) -> dict[str, Any]:
        return {"info": _info(deserialize_job(c["record"].encode(), deserializer=json.loads))}

    async def read_result(self, c: dict[str, Any]) -> dict[str, Any]:
        deserializer = self.deserializers[c.get("deserializer", "plain")]
        found = deserialize_result(c["record"].encode(), deserializer=deserializer)
        return {"info": _info(found)}

    async def check_health(self, c: dict[str, Any]) -> dict[str, Any]:
        return {"exit_code": await async_check_health(RedisSettings.from_dsn(self.url), queue_name=c["queue"])}


async def main(url: str, deserializer_file: str | None) -> None:
    driver = Driver(url, deserializer_file)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    while line := await reader.readline():
        command = json.loads(line)
        try:
            answer = await getattr(driver, command["op"])(command)
        except Exception as exc:  # reported to the test, which fails with it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
