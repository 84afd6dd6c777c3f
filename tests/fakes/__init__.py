"""Imitations of external services (OpenAI, Twilio, Google, an OTLP receiver, SMTP) for the real
client libraries to talk to on 127.0.0.1."""

from __future__ import annotations

from aiohttp import web


async def serve_local(app: web.Application, *, access_log: bool = True) -> tuple[web.AppRunner, int]:
    """Serve `app` on a free port of 127.0.0.1 (chosen by the kernel: no race with other tests);
    the runner (cleanup() stops it) and the port."""
    runner = web.AppRunner(app) if access_log else web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])
