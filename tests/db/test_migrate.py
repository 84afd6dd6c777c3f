"""Migrations: only the worker and `workhorse migrate` apply them, never at the same time twice,
and read-only commands leave a database without the schema untouched."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from app.db import migrate
from tests.support.services import ServiceUrls
from tests.support.worker import run_command

EnvFactory = Callable[..., dict[str, str]]


@pytest.fixture
async def empty_database(clean: ServiceUrls) -> AsyncIterator[str]:
    """A fresh database on the test server, with no schema at all."""
    name = f"empty_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(clean.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(clean.database_url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    admin = await asyncpg.connect(clean.database_url)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def workhorse(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await run_command(env, "app.cli", *args)


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        return {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    finally:
        await conn.close()


async def test_two_migrate_processes_on_an_empty_database_both_succeed_and_apply_once(
        make_env: EnvFactory, empty_database: str) -> None:
    """Two `workhorse migrate` started together on an empty database: both exit 0, and every
    migration is recorded exactly once (the advisory lock is taken before anything is created)."""
    env = make_env(database_url=empty_database)
    results = await asyncio.gather(workhorse(env, "migrate"), workhorse(env, "migrate"))
    assert [code for code, _, _ in results] == [0, 0], results
    conn = await asyncpg.connect(empty_database)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    finally:
        await conn.close()
    assert versions == [m.version for m in migrate.available()]


async def test_read_only_commands_on_a_database_without_schema_say_so_and_change_nothing(
        make_env: EnvFactory, empty_database: str) -> None:
    """`workhorse queues`, `dlq list`, `jobs show` and the trigger refuse in one line naming the
    missing schema; the database still has no table afterwards. `migrate --status` lists them."""
    env = make_env(database_url=empty_database)
    for args in (("queues",), ("dlq", "list"), ("jobs", "show", "some-id")):
        code, out, err = await workhorse(env, *args)
        assert code == 1 and out == "", (args, out, err)
        assert err.count("\n") == 1 and "no Workhorse schema yet" in err and "workhorse migrate" in err, err
    code, _, err = await run_command(env, "app.trigger", "ping", "--queue", "sla-monitor")
    assert code != 0 and "no Workhorse schema yet" in err and "Traceback" not in err
    assert await tables(empty_database) == set()
    code, out, _ = await workhorse(env, "migrate", "--status")
    assert code == 0 and "0001_schema" in out
    assert await tables(empty_database) == set()


async def test_concurrent_migrations_in_one_instant_never_collide(empty_database: str) -> None:
    """Twelve migrations started in the same instant (closer together than two processes can
    start) all succeed: nothing, not even the migrations table, is created outside the lock."""
    results = await asyncio.gather(*(migrate.migrate(empty_database) for _ in range(12)), return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sorted(v for r in results if isinstance(r, list) for v in r) == [m.version for m in migrate.available()]
