"""The dashboard's pages (GET): each reads through `reads` and renders one template."""

from __future__ import annotations

from aiohttp import web

from app.web.dashboard import reads
from app.web.dashboard.guard import Dashboard, page, render
from app.web.dashboard.session import Viewer


@page
async def overview(request: web.Request, d: Dashboard, viewer: Viewer) -> web.StreamResponse:
    data = await reads.overview(d.state, d.throughput)
    return render(request, d, viewer, "overview.html", section="overview", o=data)


@page
async def queue(request: web.Request, d: Dashboard, viewer: Viewer) -> web.StreamResponse:
    name = request.match_info["queue"]
    if name not in reads.all_queues(d.state.res):
        raise web.HTTPNotFound(text=f"unknown queue {name!r}")
    state = request.query.get("state", "waiting")
    state = state if state in reads.STATES else "waiting"
    search = request.query.get("q", "").strip()
    current = (await reads.overview(d.state, d.throughput)).queues
    row = next(r for r in current if r.stats.queue == name)
    jobs = await reads.queue_jobs(d.state.res, name, state, search=search)
    return render(request, d, viewer, "queue.html", section="queue", q=row, state=state, search=search,
                  jobs=jobs, states=reads.STATES)


@page
async def job(request: web.Request, d: Dashboard, viewer: Viewer) -> web.StreamResponse:
    job_id = request.query.get("id", "").strip()
    # No job id holds a NUL (the API refuses control characters), and PostgreSQL refuses one in text.
    detail = await reads.job_detail(d.state.res, job_id) if job_id and "\x00" not in job_id else None
    return render(request, d, viewer, "job.html", status=200 if detail else 404, section="job", job_id=job_id,
                  j=detail)


@page
async def dead_letters(request: web.Request, d: Dashboard, viewer: Viewer) -> web.StreamResponse:
    names = reads.all_queues(d.state.res)
    chosen = request.query.get("queue") or None
    chosen = chosen if chosen in names else None
    letters = await d.state.res.dlq.list(queue=chosen, limit=reads.LIST_LIMIT)
    parked = await d.state.res.dlq.parked()
    return render(request, d, viewer, "dead_letters.html", section="dead", letters=letters, queues=names,
                  chosen=chosen, parked=parked)
