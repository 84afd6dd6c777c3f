"""One Settings object, read from the environment once at the entry point and passed down.

Variable names are the runbooks'. A bad value stops start-up with one line naming the
variable (SettingsError); secrets are SecretStr so they never print. The queue table is
app/queue_table.py; URL checks and redaction are app/urls.py (re-exported here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.errors import SettingsError
from app.queue_table import QueueTable, RetryPolicy, UnknownQueue, load_queue_table
from app.urls import check_url, redact_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_QUEUES_FILE = PROJECT_ROOT / "config" / "queues.toml"
DEFAULT_CRON_FILE = PROJECT_ROOT / "config" / "cron.toml"

def _log_level(value: object) -> object:
    """The runbooks write `warn`; Python says WARNING. Any case is accepted."""
    if isinstance(value, str):
        upper = value.strip().upper()
        return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(upper, upper)
    return value


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_log_level)]


class Settings(BaseSettings):
    """Every setting of the process. Field names are the environment variables, lower-cased."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    redis_url: str | None = Field(None, description="redis:// or rediss:// (TLS); else REDIS_HOST and friends")
    redis_host: str | None = None
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_password: SecretStr | None = None
    redis_username: str | None = None
    redis_db: int = Field(0, ge=0, le=1000)
    redis_tls: bool = False
    database_url: str | None = None
    log_level: LogLevel = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    api_token: SecretStr | None = Field(
        None, description="API / dashboard bearer tokens, comma-separated; `ro:TOKEN` is read-only; unset: API off")
    # HTTP API: a body is read only up to this; each payload inside it is still held to 1 MB.
    api_max_body_bytes: int = Field(
        4_000_000, ge=10_000, le=100_000_000, description="largest request body /api/v1 reads (413 past it)")
    health_host: str = "127.0.0.1"
    health_port: int = Field(3100, ge=0, le=65535)
    shutdown_timeout_ms: int = Field(30_000, ge=0, le=3_600_000)
    # Sidecar limits: a client that opens connections and sends nothing (or half a request)
    # must not use up file descriptors or hold a connection open for ever.
    sidecar_header_timeout_s: float = Field(
        5.0, gt=0, le=300, description="close a sidecar connection with no complete request after this")
    # An ordinary burst of the web app's requests fits (each costs a file descriptor: the process
    # raises its soft RLIMIT_NOFILE to make room, app/runtime/process.py).
    sidecar_max_connections: int = Field(
        1024, ge=1, le=60_000,
        description="sidecar connections served at once; past it new ones wait in the listen backlog")
    # The kernel caps it at net.core.somaxconn (4096 on current Linux): a burst of the web app's
    # requests waits there instead of being refused.
    sidecar_listen_backlog: int = Field(
        2048, ge=16, le=65_535, description="connections the kernel holds for the sidecar while it is full")

    workhorse_queues: str | None = Field(None, description="comma-separated subset of queues to serve")
    workhorse_extra_jobs: str | None = Field(
        None, description="comma-separated modules whose SPECS add jobs (plugins, test jobs)"
    )
    workhorse_home: Path = PROJECT_ROOT / ".workhorse"
    queues_file: Path = DEFAULT_QUEUES_FILE
    cron_file: Path = Field(DEFAULT_CRON_FILE, description="cron table overrides (schedule, time zone, enabled)")

    # How the worker waits and how fast a crashed process's jobs come back.
    poll_fallback_ms: int = Field(1000, ge=10, le=60_000)
    job_lock_ttl_s: float = Field(30.0, ge=1, le=3600)
    job_heartbeat_s: float = Field(10.0, gt=0, le=600)
    process_liveness_ttl_s: float = Field(
        6.0, ge=1, le=60, description="a killed process's jobs are taken over this long after it stopped beating")
    health_check_interval_s: float = Field(30.0, gt=0, le=3600)
    # Stock arq clients announce nothing; keyspace notifications on the queues wake workers at
    # once (app/queue/notifications.py): `enable` turns them on where CONFIG SET is allowed,
    # `use` only listens, `off` leaves their jobs to the fallback sweep.
    redis_keyspace_notifications: Literal["enable", "use", "off"] = "enable"
    # Retention, like BullMQ's removeOnComplete / removeOnFail: completed results 24 h and at
    # most the newest N per queue; failed jobs' results 7 days; dead letters until purged.
    keep_result_s: int = Field(86_400, ge=0, description="how long a completed job's result is kept")
    keep_results_per_queue: int = Field(1000, ge=1, description="completed results kept per queue, newest first")
    keep_failed_s: int = Field(604_800, ge=0, description="how long a failed job's result is kept")
    db_connect_timeout_s: float = Field(60.0, gt=0)

    breaker_failure_threshold: int = Field(5, ge=1)
    breaker_reset_timeout_s: float = Field(60.0, gt=0)

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_embedding_model: str = "text-embedding-3-small"
    openai_vision_model: str = "gpt-4o-mini"
    openai_chat_model: str = "gpt-4o-mini"

    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_secure: Literal["starttls", "tls", "none"] = "starttls"
    smtp_from_email: str = "no-reply@localhost"
    smtp_from_name: str = "Workhorse"
    smtp_timeout_s: float = Field(30.0, gt=0)

    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_phone_number: str | None = None
    twilio_base_url: str | None = Field(None, description="API root; only for tests and proxies")

    # Calendar sync
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    google_token_url: str = Field("https://oauth2.googleapis.com/token", description="OAuth token endpoint")
    google_calendar_base_url: str = Field("https://www.googleapis.com/calendar/v3", description="Calendar v3 root")
    google_timeout_s: float = Field(30.0, gt=0)
    calendar_token_keys: SecretStr | None = Field(
        None, description="comma-separated Fernet keys; the first encrypts, all decrypt (rotation)")
    calendar_sync_days_back: int = Field(30, ge=0, le=3650)
    calendar_sync_days_ahead: int = Field(365, ge=1, le=3650)
    calendar_sync_page_size: int = Field(250, ge=100, le=250)
    calendar_max_consecutive_failures: int = Field(5, ge=1, le=100)
    calendar_push_url: str | None = Field(None, description="public HTTPS push endpoint; unset: no watch channels")
    calendar_watch_ttl_s: int = Field(604_800, ge=3600, le=2_592_000)

    webhook_secret: SecretStr | None = None
    webhook_allowed_hosts: str = Field("", description="comma-separated hosts allowed despite SSRF rules")
    webhook_timeout_s: float = Field(10.0, gt=0)

    app_base_url: str = Field("http://localhost:3000", description="web app root, for links in messages")

    storage_dir: Path = PROJECT_ROOT / ".workhorse" / "storage"
    storage_backend: Literal["local", "s3"] = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (Spaces, MinIO); empty for AWS")
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    document_max_bytes: int = Field(50_000_000, ge=1)
    # OCR: pages and pixels are capped so a decompression bomb fails instead of eating memory.
    ocr_workers: int = Field(0, ge=0, le=64, description="OCR processes; 0 = one per CPU")
    ocr_dpi: int = Field(300, ge=72, le=600)
    ocr_max_pages: int = Field(200, ge=1)
    ocr_max_pixels: int = Field(40_000_000, ge=1, description="per page or image")
    vision_max_pages: int = Field(5, ge=1, le=50)
    openai_timeout_s: float = Field(60.0, gt=0)
    embedding_provider: Literal["auto", "openai", "local", "none"] = "auto"
    embedding_batch_size: int = Field(100, ge=1, le=100)
    chunk_tokens: int = Field(500, ge=100, le=1000)
    chunk_overlap_tokens: int = Field(50, ge=0, le=200)

    # Reminders: the scan queues due reminders in batches, each sent side by side.
    reminder_batch_size: int = Field(50, ge=1, le=500, description="reminders per send_reminders job")
    reminder_send_concurrency: int = Field(20, ge=1, le=200, description="reminders of one batch sent at once")
    smtp_pool_size: int = Field(10, ge=1, le=100, description="SMTP connections kept open and used at once")

    # Intake routing and the scheduling agent
    intake_min_confidence: float = Field(0.7, ge=0, le=1, description="below: the General Intake pipeline")
    agent_min_confidence: float = Field(0.7, ge=0, le=1, description="below: the task goes NEEDS_REVIEW")
    model_json_attempts: int = Field(3, ge=1, le=10, description="model calls per job when its JSON is malformed")
    scheduling_time_zone: str = Field("UTC", description="time zone of users without preferences")
    scheduling_max_task_retries: int = Field(3, ge=0, le=20, description="retry_task runs before NEEDS_REVIEW")
    # Documents and SLA
    ocr_page_timeout_s: float = Field(120.0, gt=0, le=3600, description="tesseract's limit per page")
    sla_clock_start: Literal["created", "started"] = Field(
        "created", description="what the SLA clock runs from: created_at (the runbook), or started_at "
                               "when set (created_at until then)")

    # Tracing: with an endpoint, each job is a span exported over OTLP/HTTP (app/queue/tracing.py).
    otel_exporter_otlp_endpoint: str | None = Field(
        None, pattern=r"^https?://", description="OTLP/HTTP collector root (/v1/traces is appended); unset: off")
    otel_service_name: str = Field("workhorse", min_length=1, description="service.name of the spans")

    # Transactional outbox (app/queue/outbox.py): the relay moves job_outbox rows to the queues.
    outbox_relay: bool = Field(True, description="run the outbox relay in this process (several may: SKIP LOCKED)")
    outbox_poll_interval_ms: int = Field(
        100, ge=10, le=60_000, description="poll while the LISTEN connection is down (every 5 s while it is up)")
    outbox_batch_size: int = Field(100, ge=1, le=1000, description="rows claimed per transaction")
    outbox_archive_after_s: int = Field(
        604_800, ge=0, description="DISPATCHED rows older than this move to job_outbox_archive")

    # BullMQ ingress (app/queue/bullmq/): jobs BullMQ producers add are run by the queue of the same name.
    bullmq_prefix: str | None = Field(None, min_length=1, description="BullMQ's key prefix (`bull`); unset: off")
    bullmq_queues: str | None = Field(None, description="comma-separated BullMQ queues to take (default: all)")

    # Set by systemd (Type=notify, WatchdogSec=).
    notify_socket: str | None = None
    watchdog_usec: int | None = Field(None, ge=0)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *args: Any, **kwargs: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load() reads the environment itself (so callers can pass their own mapping);
        # only the values it hands over count.
        return (init_settings,)

    # Filled from queues_file and the environment by load(); not an environment variable.
    queue_table: QueueTable | None = Field(None, exclude=True)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        return check_url(value, ("redis", "rediss", "unix"), "redis://host:6379/0")

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        return check_url(value, ("postgres", "postgresql"), "postgresql://user@host:5432/db")

    @property
    def redis_dsn(self) -> str | None:
        """REDIS_URL, else a URL built from REDIS_HOST (and PORT, PASSWORD, USERNAME, DB, TLS)."""
        if self.redis_url:
            return self.redis_url
        if not self.redis_host:
            return None
        auth = ""
        if self.redis_password is not None:
            user = quote(self.redis_username or "", safe="")
            auth = f"{user}:{quote(self.redis_password.get_secret_value(), safe='')}@"
        scheme = "rediss" if self.redis_tls else "redis"
        host = f"[{self.redis_host}]" if ":" in self.redis_host else self.redis_host
        return f"{scheme}://{auth}{host}:{self.redis_port}/{self.redis_db}"

    @property
    def services_configured(self) -> bool:
        """Whether any Redis or database variable is set: then the embedded default never starts."""
        return bool(self.redis_dsn or self.database_url)

    @property
    def queues(self) -> QueueTable:
        assert self.queue_table is not None, "Settings.load() fills the queue table"
        return self.queue_table

    def served_queues(self, override: str | None = None) -> list[str]:
        """The queues this process serves: --queues, else WORKHORSE_QUEUES, else all."""
        chosen = override or self.workhorse_queues
        if not chosen:
            return list(self.queues.queues)
        names = [n.strip() for n in chosen.split(",") if n.strip()]
        unknown = [n for n in names if n not in self.queues.queues]
        if unknown:
            raise SettingsError(
                f"invalid setting WORKHORSE_QUEUES: unknown queue(s) {', '.join(unknown)}; "
                f"known: {', '.join(self.queues.queues)}"
            )
        return names

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the environment (and the queue table) once; raise SettingsError on a bad value."""
        env = dict(os.environ if environ is None else environ)
        try:
            base = cls(**_env_fields(cls, env), **overrides)  # type: ignore[arg-type]  # values are validated
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None
        table = load_queue_table(base.queues_file, env)
        return base.model_copy(update={"queue_table": table})


def _env_fields(cls: type[Settings], env: Mapping[str, str]) -> dict[str, str]:
    """The environment's values for our fields (explicit, so tests can pass their own env)."""
    upper = {k.upper(): v for k, v in env.items()}
    return {
        name: upper[name.upper()]
        for name in cls.model_fields
        if name != "queue_table" and name.upper() in upper and upper[name.upper()] != ""
    }


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    var = str(first["loc"][0]).upper() if first["loc"] else "?"
    if var in _SECRET_BEARING:
        return f"invalid setting {var}: {first['msg']}"
    return f"invalid setting {var}: {first['msg']} (got {first.get('input')!r})"


# Variables whose value may hold a password: an error message names them but never echoes them.
_SECRET_BEARING = {"REDIS_URL", "DATABASE_URL", "REDIS_PASSWORD"}


__all__ = ["PROJECT_ROOT", "QueueTable", "RetryPolicy", "Settings", "SettingsError", "UnknownQueue", "redact_url"]
