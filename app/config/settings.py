"""One Settings object, read from the environment once at the entry point and passed down; each
part of the program gets the section it needs (`settings.smtp` to the SMTP client).

Variable names are the runbooks': SMTP_HOST, REDIS_URL, API_TOKEN. pydantic-settings reads them
itself, with `_` as the nesting delimiter split once: SMTP_HOST is `smtp.host`, and a name that
is not a section's (LOG_LEVEL is `log.level`, SHUTDOWN_TIMEOUT_MS a field of its own) is read as
it stands. `Settings.load(environ)` reads a given mapping instead of the process's environment
(app/config/sources.py); the queue table comes from its own source. A bad value stops start-up
with one line naming the variable (SettingsError); secrets are SecretStr so they never print.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.config import features, operations, services
from app.config.paths import DEFAULT_CRON_FILE, DEFAULT_QUEUES_FILE, PROJECT_ROOT
from app.config.queue_table import QueueTable
from app.config.sources import CommaList, MappingSource, NetworkList, QueueTableSource
from app.errors import SettingsError


class Settings(BaseSettings):
    """Every setting of the process, by section."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_nested_delimiter="_",
                                      env_nested_max_split=1, env_ignore_empty=True)

    # What it connects to (app/config/services.py).
    redis: services.RedisSettings = services.RedisSettings()
    database: services.DatabaseSettings = services.DatabaseSettings()
    db_connect_timeout_s: float = Field(60.0, gt=0, description="how long start-up waits for Redis and PostgreSQL")
    openai: services.OpenAISettings = services.OpenAISettings()
    smtp: services.SmtpSettings = services.SmtpSettings()
    twilio: services.TwilioSettings = services.TwilioSettings()
    google: services.GoogleSettings = services.GoogleSettings()
    webhook: services.WebhookSettings = services.WebhookSettings()
    s3: services.S3Settings = services.S3Settings()
    otel: services.OtelSettings = services.OtelSettings()

    # How the process runs (app/config/operations.py).
    log: operations.LogSettings = operations.LogSettings()
    api: operations.ApiSettings = operations.ApiSettings()
    health: operations.HealthSettings = operations.HealthSettings()
    sidecar: operations.SidecarSettings = operations.SidecarSettings()
    workhorse: operations.WorkhorseSettings = operations.WorkhorseSettings()
    job: operations.JobSettings = operations.JobSettings()
    keep: operations.RetentionSettings = operations.RetentionSettings()
    breaker: operations.BreakerSettings = operations.BreakerSettings()
    bullmq: operations.BullmqSettings = operations.BullmqSettings()
    # Who the sidecar believes about the scheme and host a request was made with (app/web/proxies.py).
    # Top-level fields: the runbooks name them TRUSTED_PROXIES and ALLOWED_HOSTS, not SIDECAR_...
    trusted_proxies: NetworkList = Field(
        [], description="proxy addresses/CIDRs whose X-Forwarded-Proto/-Host (or Forwarded) the sidecar believes")
    allowed_hosts: CommaList = Field(
        [], description="host names the sidecar answers to (400 for any other Host); none: any")
    shutdown_timeout_ms: int = Field(30_000, ge=0, le=3_600_000)
    poll_fallback_ms: int = Field(1000, ge=10, le=60_000, description="poll even without a wake-up this often")
    process_liveness_ttl_s: float = Field(
        6.0, ge=1, le=60, description="a killed process's jobs are taken over this long after it stopped beating")
    queues_file: Path = DEFAULT_QUEUES_FILE
    cron_file: Path = Field(DEFAULT_CRON_FILE, description="cron table overrides (schedule, time zone, enabled)")
    queue_table: QueueTable
    """The queue table (config/queues.toml with its environment overrides), from its own source;
    named so that no variable reads as part of it (QUEUES_FILE would, for a field `queues`)."""

    # What the jobs do (app/config/features.py).
    app_base_url: str = Field("http://localhost:3000", description="web app root, for links in messages")
    calendar: features.CalendarSettings = features.CalendarSettings()
    storage: features.StorageSettings = features.StorageSettings()
    document_max_bytes: int = Field(50_000_000, ge=1)
    ocr: features.OcrSettings = features.OcrSettings()
    vision_max_pages: int = Field(5, ge=1, le=50)
    embedding: features.EmbeddingSettings = features.EmbeddingSettings()
    chunk: features.ChunkSettings = features.ChunkSettings()
    reminder: features.ReminderSettings = features.ReminderSettings()
    intake_min_confidence: float = Field(0.7, ge=0, le=1, description="below: the General Intake pipeline")
    agent_min_confidence: float = Field(0.7, ge=0, le=1, description="below: the task goes NEEDS_REVIEW")
    model_json_attempts: int = Field(3, ge=1, le=10, description="model calls per job when its JSON is malformed")
    scheduling: features.SchedulingSettings = features.SchedulingSettings()
    sla_clock_start: Literal["created", "started"] = Field(
        "created", description="what the SLA clock runs from: created_at (the runbook), or started_at "
                               "when set (created_at until then)")
    outbox: features.OutboxSettings = features.OutboxSettings()

    # Set by systemd (Type=notify, WatchdogSec=).
    notify_socket: str | None = None
    watchdog_usec: int | None = Field(None, ge=0)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The process's environment, or load()'s mapping; then the queue table read beside it.
        given = _given_environ.get()
        environ: Mapping[str, str] = given if given is not None else _process_environ()
        env = env_settings if given is None else MappingSource(settings_cls, environ)
        return init_settings, env, QueueTableSource(settings_cls, environ)

    @classmethod
    def variables(cls) -> dict[str, tuple[str, ...]]:
        """Every environment variable Settings reads -> where its value lands (("smtp", "host"))."""
        found: dict[str, tuple[str, ...]] = {}
        for name, field in cls.model_fields.items():
            section = field.annotation
            if name == "queue_table":
                continue  # the queue table's own variables are per queue (app/config/queue_table.py)
            if isinstance(section, type) and issubclass(section, BaseModel):
                found.update({f"{name}_{sub}".upper(): (name, sub) for sub in section.model_fields})
            else:
                found[name.upper()] = (name,)
        return found

    @property
    def queues(self) -> QueueTable:
        return self.queue_table

    @property
    def services_configured(self) -> bool:
        """Whether any Redis or database variable is set: then the embedded default never starts."""
        return bool(self.redis.dsn or self.database.url)

    def served_queues(self, override: str | None = None) -> list[str]:
        """The queues this process serves: --queues, else WORKHORSE_QUEUES, else all."""
        chosen = [n.strip() for n in override.split(",") if n.strip()] if override else self.workhorse.queues
        if not chosen:
            return list(self.queues.queues)
        unknown = [n for n in chosen if n not in self.queues.queues]
        if unknown:
            raise SettingsError(
                f"invalid setting WORKHORSE_QUEUES: unknown queue(s) {', '.join(unknown)}; "
                f"known: {', '.join(self.queues.queues)}"
            )
        return chosen

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the environment (or `environ`) once; raise SettingsError on a bad value."""
        token = _given_environ.set(environ)
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None
        finally:
            _given_environ.reset(token)


# load()'s mapping while it builds a Settings: pydantic-settings asks for the sources inside the
# constructor, which takes no such argument.
_given_environ: ContextVar[Mapping[str, str] | None] = ContextVar("given_environ", default=None)


def _process_environ() -> Mapping[str, str]:
    import os  # the one place that reads the process's environment

    return os.environ


def _describe(exc: ValidationError) -> str:
    """One line naming the variable: ("smtp", "port") is SMTP_PORT."""
    first = exc.errors()[0]
    names = [str(p) for p in first["loc"] if isinstance(p, str)]
    var = "_".join(names).upper() if names else "?"
    if var in _SECRET_BEARING or any(s in var for s in ("PASSWORD", "SECRET", "TOKEN", "KEY")):
        return f"invalid setting {var}: {first['msg']}"
    return f"invalid setting {var}: {first['msg']} (got {first.get('input')!r})"


# Variables whose value may hold a password: an error message names them but never echoes them.
_SECRET_BEARING = {"REDIS_URL", "DATABASE_URL"}


__all__ = ["PROJECT_ROOT", "QueueTable", "Settings", "SettingsError"]
