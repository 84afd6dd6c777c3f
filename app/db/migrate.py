"""Plain SQL migrations, applied in order, each in its own transaction, and recorded.

An advisory lock makes concurrent starts of several processes safe: one applies, the others
wait and then find nothing left to do. A recorded migration whose file changed is refused.

Migrations are expand-only (tests/db/test_expand_only.py): a release runs on the schema of any
later release, so a rolling deploy runs both side by side and a rollback needs no down
migration. A database that holds migrations this release does not know is therefore fine, and
said once in the log.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg
import structlog

from app.errors import AppError

log = structlog.get_logger(__name__)

# Arbitrary but fixed: the advisory lock key shared by every Workhorse process.
_LOCK_KEY = 0x574F524B  # "WORK"

MIGRATIONS_DIR = Path(str(resources.files("app.db") / "migrations"))


class MigrationError(RuntimeError):
    pass


class SchemaMissing(AppError):
    """A read-only command met a database whose schema is not (fully) applied."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    return [Migration(p.stem, p) for p in sorted(directory.glob("*.sql"))]


async def apply(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is missing; return the versions applied now."""
    applied_now: list[str] = []
    # The lock comes first: two processes creating schema_migrations at once would otherwise
    # race on the catalog (CREATE TABLE IF NOT EXISTS is not safe against a concurrent create).
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT * FROM schema_migrations")}
        known = available(directory)
        newer = sorted(set(done) - {m.version for m in known})
        if newer:
            log.info("schema_newer_than_release", versions=newer)
        for m in known:
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise MigrationError(f"migration {m.version} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)", m.version, m.checksum
                )
            log.info("migration_applied", version=m.version)
            applied_now.append(m.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def pending(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done = set()
    if exists:
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [m.version for m in available(directory) if m.version not in done]


async def migrate(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await apply(conn)
    finally:
        await conn.close()


async def require_schema(url: str) -> None:
    """Raise SchemaMissing, changing nothing, unless every migration is applied."""
    conn = await asyncpg.connect(url)
    try:
        waiting = await pending(conn)
    finally:
        await conn.close()
    if waiting:
        raise SchemaMissing(
            f"the database has no Workhorse schema yet ({len(waiting)} migration(s) pending: {', '.join(waiting)});"
            " run `workhorse migrate` or start the worker once")
