"""A private PostgreSQL (pgserver) that a test may stop and start again."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class PrivatePostgres:
    def __init__(self, directory: Path) -> None:
        import pgserver

        self._pgserver: Any = pgserver
        self.directory = directory
        self.server: Any = pgserver.get_server(directory, cleanup_mode="stop")  # type: ignore[attr-defined]
        self.url = str(self.server.get_uri())

    def stop(self) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # made by a factory

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.directory, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def cleanup(self) -> None:
        self.server.cleanup()
