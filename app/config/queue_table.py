"""The queue table: one row per queue (concurrency, timeout, retry policy, rate limit) and per-job
overrides, read from config/queues.toml with environment overrides (`DOCUMENT_PROCESSING_CONCURRENCY=5`,
`INTAKE_ROUTING_RATE_LIMIT_MAX=100`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.backoff import Backoff
from app.errors import SettingsError

# Per-queue values that the environment may override: suffix -> (field, type).
_QUEUE_OVERRIDES: dict[str, tuple[str, type]] = {
    "CONCURRENCY": ("concurrency", int),
    "TIMEOUT_S": ("timeout_s", float),
}
_RETRY_OVERRIDES: dict[str, tuple[str, type]] = {
    "ATTEMPTS": ("attempts", int),
    "BASE_DELAY_S": ("base_delay_s", float),
    "MAX_DELAY_S": ("max_delay_s", float),
}
_RATE_OVERRIDES: dict[str, tuple[str, type]] = {
    "RATE_LIMIT_MAX": ("max", int),
    "RATE_LIMIT_DURATION_MS": ("duration_ms", int),
}



class RetryPolicy(BaseModel):
    """Attempts and exponential backoff of one queue or job (from config/queues.toml)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(3, ge=1, le=100, description="runs in all, the first included")
    base_delay_s: float = Field(5.0, ge=0, description="delay before the second attempt")
    max_delay_s: float = Field(600.0, ge=0, description="cap on any one delay")
    factor: float = Field(2.0, ge=1, description="growth of the delay per attempt")
    jitter: float = Field(0.1, ge=0, le=1, description="± fraction of the delay, spreads herds")

    def backoff_s(self, attempt: int, *, rand: float = 0.5) -> float:
        """Delay after failed attempt `attempt` (1-based); `rand` in [0, 1) places the jitter."""
        return Backoff(self.base_delay_s, self.factor, self.max_delay_s, self.jitter).delay_s(attempt, rand=rand)


class RateLimit(BaseModel):
    """BullMQ's worker `limiter`: at most `max` jobs of the queue start per `duration_ms`, counted
    across every process (a window that opens with its first job)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max: int = Field(ge=1, le=1_000_000)
    duration_ms: int = Field(ge=1, le=86_400_000)


class UnknownQueue(SettingsError):
    """A queue name the queue table does not have."""


class QueueConfig(BaseModel):
    """One row of the queue table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    concurrency: int = Field(ge=1, le=1000)
    timeout_s: float = Field(gt=0, le=86_400)
    retry: RetryPolicy = RetryPolicy()
    rate_limit: RateLimit | None = None


class JobOverride(BaseModel):
    """Per-job values that replace the queue's (today: the retry policy)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    retry: RetryPolicy | None = None
    timeout_s: float | None = Field(None, gt=0, le=86_400)


class QueueTable(BaseModel):
    model_config = ConfigDict(frozen=True)

    queues: dict[str, QueueConfig]
    jobs: dict[str, JobOverride] = {}

    def queue(self, name: str) -> QueueConfig:
        try:
            return self.queues[name]
        except KeyError:
            raise UnknownQueue(f"unknown queue {name!r}; known: {', '.join(self.queues)}") from None


def load_queue_table(path: Path, env: Mapping[str, str]) -> QueueTable:
    """Read config/queues.toml and apply QUEUE_NAME_FIELD (and JOB_NAME_FIELD) overrides from `env`."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"invalid setting QUEUES_FILE: {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"invalid setting QUEUES_FILE: {path}: {exc}") from None
    queues = {name: _queue_row(name, row, env) for name, row in raw.get("queues", {}).items()}
    jobs = {name: _job_row(name, row, env) for name, row in raw.get("jobs", {}).items()}
    try:
        return QueueTable(queues=queues, jobs=jobs)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"invalid queue table {path} at {where}: {first['msg']}") from None


def _queue_row(name: str, row: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """A [queues.NAME] row with NAME_FIELD overrides applied (NAME in upper snake case)."""
    row = {**row, "name": name, "retry": dict(row.get("retry", {}))}
    prefix = name.upper().replace("-", "_") + "_"
    for suffix, (field, kind) in _QUEUE_OVERRIDES.items():
        _override(row, field, kind, env, prefix + suffix)
    for suffix, (field, kind) in _RETRY_OVERRIDES.items():
        _override(row["retry"], field, kind, env, prefix + suffix)
    limit = dict(row.get("rate_limit") or {})
    for suffix, (field, kind) in _RATE_OVERRIDES.items():
        _override(limit, field, kind, env, prefix + suffix)
    row["rate_limit"] = limit or None
    return row


def _job_row(name: str, row: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """A [jobs.NAME] row with its overrides; a job without its own policy follows its queue's."""
    row = dict(row)
    prefix = name.upper().replace("-", "_") + "_"
    _override(row, "timeout_s", float, env, prefix + "TIMEOUT_S")
    if "retry" in row:
        row["retry"] = dict(row["retry"])
        for suffix, (field, kind) in _RETRY_OVERRIDES.items():
            _override(row["retry"], field, kind, env, prefix + suffix)
    return row


def _override(row: dict[str, Any], field: str, kind: type, env: Mapping[str, str], var: str) -> None:
    if var not in env or env[var] == "":
        return
    try:
        value = kind(env[var])
    except ValueError:
        raise SettingsError(f"invalid setting {var}: expected a {kind.__name__}, got {env[var]!r}") from None
    if value <= 0 and field != "base_delay_s":
        raise SettingsError(f"invalid setting {var}: must be greater than 0, got {env[var]!r}")
    row[field] = value
