"""/queues: every queue's counts, and pausing or resuming one across every process."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.queue import control, stats
from app.web.api.context import api_of, reply

routes = web.RouteTableDef()


@routes.get("/queues", name="queues-list")
async def list_queues(request: web.Request) -> web.Response:
    res = api_of(request).res
    current, dead_letters = await stats.read(res.redis, list(res.registry.table.queues)), await res.dlq.depth()
    return reply({"queues": [queue_view(s, dead_letters) for s in current.values()]})


@routes.post("/queues/{queue}/pause", name="queues-pause")
async def pause(request: web.Request) -> web.Response:
    res, queue = api_of(request).res, _queue(request)
    await control.pause(res.redis, queue)
    return reply({"queue": queue, "paused": True})


@routes.post("/queues/{queue}/resume", name="queues-resume")
async def resume(request: web.Request) -> web.Response:
    res, queue = api_of(request).res, _queue(request)
    await control.resume(res.redis, queue)
    return reply({"queue": queue, "paused": False})


def _queue(request: web.Request) -> str:
    """The path's queue, if the queue table has it (UnknownQueue, a 404, otherwise)."""
    return api_of(request).res.settings.queues.queue(request.match_info["queue"]).name


def queue_view(s: stats.QueueStats, dead_letters: dict[str, int]) -> dict[str, Any]:
    view = s.as_json()
    view["deadLetters"] = dead_letters.get(s.queue, 0)
    return view
