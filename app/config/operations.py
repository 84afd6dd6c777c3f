"""Settings of how the process runs: logging, the HTTP API and the sidecar, which queues it
serves, job locks, result retention and circuit breakers.

A model's fields are its environment variables without the prefix: `SidecarSettings.max_connections`
is SIDECAR_MAX_CONNECTIONS (app/config/settings.py explains how names are read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.config.paths import PROJECT_ROOT
from app.config.sources import CommaList, SecretList


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


def _log_level(value: object) -> object:
    """The runbooks write `warn`; Python says WARNING. Any case is accepted."""
    if isinstance(value, str):
        upper = value.strip().upper()
        return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(upper, upper)
    return value


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_log_level)]


class LogSettings(_Section):
    level: LogLevel = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


class ApiSettings(_Section):
    token: SecretList = Field(
        [], description="API / dashboard bearer tokens, comma-separated; `ro:TOKEN` is read-only; none: API off")
    # A body is read only up to this; each payload inside it is still held to 1 MB.
    max_body_bytes: int = Field(
        4_000_000, ge=10_000, le=100_000_000, description="largest request body /api/v1 reads (413 past it)")


class HealthSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(3100, ge=0, le=65535)
    check_interval_s: float = Field(30.0, gt=0, le=3600, description="arq's <queue>:health-check record")


class SidecarSettings(_Section):
    """A client that opens connections and sends nothing (or half a request) must not use up file
    descriptors or hold a connection open for ever; a burst must not lose requests."""

    header_timeout_s: float = Field(
        5.0, gt=0, le=300, description="close a sidecar connection with no complete request after this")
    # An ordinary burst of the web app's requests fits (each costs a file descriptor: the process
    # raises its soft RLIMIT_NOFILE to make room, app/runtime/process.py).
    max_connections: int = Field(
        1024, ge=1, le=60_000,
        description="sidecar connections served at once; past it new ones wait in the listen backlog")
    # The kernel caps it at net.core.somaxconn (4096 on current Linux): a burst of the web app's
    # requests waits there instead of being refused.
    listen_backlog: int = Field(
        2048, ge=16, le=65_535, description="connections the kernel holds for the sidecar while it is full")


class WorkhorseSettings(_Section):
    queues: CommaList = Field([], description="the subset of queues to serve (comma-separated); none: all")
    extra_jobs: CommaList = Field([], description="modules whose SPECS add jobs (plugins, test jobs)")
    home: Path = PROJECT_ROOT / ".workhorse"


class JobSettings(_Section):
    """How fast a crashed process's jobs come back: the lock of a running job is extended every
    heartbeat and lasts at least this long (app/queue/worker.py)."""

    lock_ttl_s: float = Field(30.0, ge=1, le=3600)
    heartbeat_s: float = Field(10.0, gt=0, le=600)


class RetentionSettings(_Section):
    """Like BullMQ's removeOnComplete / removeOnFail: completed results 24 h and at most the
    newest N per queue; failed jobs' results 7 days; dead letters until purged."""

    result_s: int = Field(86_400, ge=0, description="how long a completed job's result is kept")
    results_per_queue: int = Field(1000, ge=1, description="completed results kept per queue, newest first")
    failed_s: int = Field(604_800, ge=0, description="how long a failed job's result is kept")


class BreakerSettings(_Section):
    failure_threshold: int = Field(5, ge=1)
    reset_timeout_s: float = Field(60.0, gt=0)


class BullmqSettings(_Section):
    """The BullMQ ingress (app/queue/bullmq/): jobs BullMQ producers add are run by the Workhorse
    queue of the same name."""

    prefix: str | None = Field(None, min_length=1, description="BullMQ's key prefix (`bull`); unset: off")
    queues: CommaList = Field([], description="BullMQ queues to take, comma-separated (default: every queue)")
