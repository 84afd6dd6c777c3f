"""Every environment variable config/env.example documents is read, under its own name and in the
format the runbooks write it, and lands where the settings say; every name accepted before the
settings had sections still is."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, SecretStr, TypeAdapter

from app.config import PROJECT_ROOT, Settings

ENV_EXAMPLE = PROJECT_ROOT / "config" / "env.example"
_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]+)=(\S*)", re.M)

# Read before the settings had sections (one flat field each), as operators' unit files set them.
ACCEPTED_BEFORE = frozenset([
    "AGENT_MIN_CONFIDENCE", "API_MAX_BODY_BYTES", "API_TOKEN", "APP_BASE_URL", "BREAKER_FAILURE_THRESHOLD",
    "BREAKER_RESET_TIMEOUT_S", "CALENDAR_MAX_CONSECUTIVE_FAILURES", "CALENDAR_PUSH_URL",
    "CALENDAR_SYNC_DAYS_AHEAD", "CALENDAR_SYNC_DAYS_BACK", "CALENDAR_SYNC_PAGE_SIZE", "CALENDAR_TOKEN_KEYS",
    "CALENDAR_WATCH_TTL_S", "CHUNK_OVERLAP_TOKENS", "CHUNK_TOKENS", "CRON_FILE", "DATABASE_URL",
    "DB_CONNECT_TIMEOUT_S", "DOCUMENT_MAX_BYTES", "EMBEDDING_BATCH_SIZE", "EMBEDDING_PROVIDER",
    "GOOGLE_CALENDAR_BASE_URL", "GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET", "GOOGLE_TIMEOUT_S",
    "GOOGLE_TOKEN_URL", "HEALTH_CHECK_INTERVAL_S", "HEALTH_HOST", "HEALTH_PORT", "INTAKE_MIN_CONFIDENCE",
    "JOB_HEARTBEAT_S", "JOB_LOCK_TTL_S", "KEEP_FAILED_S", "KEEP_RESULTS_PER_QUEUE", "KEEP_RESULT_S",
    "LOG_FORMAT", "LOG_LEVEL", "MODEL_JSON_ATTEMPTS", "NOTIFY_SOCKET", "OCR_DPI", "OCR_MAX_PAGES",
    "OCR_MAX_PIXELS", "OCR_PAGE_TIMEOUT_S", "OCR_WORKERS", "OPENAI_API_KEY", "OPENAI_BASE_URL",
    "OPENAI_CHAT_MODEL", "OPENAI_EMBEDDING_MODEL", "OPENAI_TIMEOUT_S", "OPENAI_VISION_MODEL",
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "OUTBOX_ARCHIVE_AFTER_S", "OUTBOX_BATCH_SIZE",
    "OUTBOX_POLL_INTERVAL_MS", "OUTBOX_RELAY", "POLL_FALLBACK_MS", "PROCESS_LIVENESS_TTL_S", "QUEUES_FILE",
    "REDIS_DB", "REDIS_HOST", "REDIS_KEYSPACE_NOTIFICATIONS", "REDIS_PASSWORD", "REDIS_PORT", "REDIS_TLS",
    "REDIS_URL", "REDIS_USERNAME", "REMINDER_BATCH_SIZE", "REMINDER_SEND_CONCURRENCY", "S3_ACCESS_KEY_ID",
    "S3_BUCKET", "S3_ENDPOINT_URL", "S3_REGION", "S3_SECRET_ACCESS_KEY", "SCHEDULING_MAX_TASK_RETRIES",
    "SCHEDULING_TIME_ZONE", "SHUTDOWN_TIMEOUT_MS", "SIDECAR_HEADER_TIMEOUT_S", "SIDECAR_LISTEN_BACKLOG",
    "SIDECAR_MAX_CONNECTIONS", "SLA_CLOCK_START", "SMTP_FROM_EMAIL", "SMTP_FROM_NAME", "SMTP_HOST",
    "SMTP_PASSWORD", "SMTP_POOL_SIZE", "SMTP_PORT", "SMTP_SECURE", "SMTP_TIMEOUT_S", "SMTP_USER",
    "STORAGE_BACKEND", "STORAGE_DIR", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_BASE_URL",
    "TWILIO_PHONE_NUMBER", "VISION_MAX_PAGES", "WATCHDOG_USEC", "WEBHOOK_ALLOWED_HOSTS", "WEBHOOK_SECRET",
    "WEBHOOK_TIMEOUT_S", "WORKHORSE_EXTRA_JOBS", "WORKHORSE_HOME", "WORKHORSE_QUEUES",
])

# A value in the runbooks' format for each variable the example leaves blank.
SAMPLES = {
    "REDIS_URL": "rediss://user:pw@cache.internal:6380/2?ssl_ca_certs=/etc/ca.pem", "REDIS_PASSWORD": "p@ss",
    "REDIS_USERNAME": "worker", "REDIS_TLS": "true", "DATABASE_URL": "postgresql://u:pw@db:5432/crm",
    "API_TOKEN": "tok-write, ro:tok-read", "WORKHORSE_QUEUES": "sla-monitor, intake-routing",
    "WORKHORSE_EXTRA_JOBS": "tests.support.jobs", "NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OPENAI_API_KEY": "sk-test",
    "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "SMTP_HOST": "smtp.example.com", "SMTP_USER": "mailer",
    "SMTP_PASSWORD": "secret", "TWILIO_ACCOUNT_SID": "AC123", "TWILIO_AUTH_TOKEN": "tw-secret",
    "TWILIO_PHONE_NUMBER": "+15005550006", "TWILIO_BASE_URL": "http://127.0.0.1:9", "GOOGLE_CLIENT_ID": "id",
    "GOOGLE_CLIENT_SECRET": "g-secret", "CALENDAR_TOKEN_KEYS": "key-one,key-two", "CALENDAR_PUSH_URL":
    "https://app.example.com/push", "WEBHOOK_SECRET": "hook", "WEBHOOK_ALLOWED_HOSTS": "hooks.internal, 10.0.0.8",
    "S3_BUCKET": "docs", "S3_ENDPOINT_URL": "https://s3.example.com", "S3_ACCESS_KEY_ID": "AK",
    "S3_SECRET_ACCESS_KEY": "s3-secret", "TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8, fd00::/8",
    "ALLOWED_HOSTS": "workhorse.internal, dash.example.com", "REDIS_SENTINEL_USERNAME": "sentinel-user",
    "REDIS_SENTINEL_PASSWORD": "s3ntinel", "BULLMQ_QUEUES": "intake-routing, sla-monitor",
}
# Variables that are only valid beside another one.
COMPANIONS = {"REDIS_SENTINELS": {"REDIS_SENTINEL_MASTER": "mymaster"}}
# Spellings the runbooks use that differ from the value they mean.
SPELLINGS = [("LOG_LEVEL", "warn", ("log", "level"), "WARNING"), ("REDIS_TLS", "1", ("redis", "tls"), True),
             ("OUTBOX_RELAY", "false", ("outbox", "relay"), False),
             ("API_TOKEN", "a,,b ,", ("api", "token"), ["a", "b"])]


def documented() -> dict[str, str]:
    return dict(_LINE.findall(ENV_EXAMPLE.read_text()))


def _plain(value: Any) -> Any:
    """Secrets compared by their value."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _expected(path: tuple[str, ...], raw: str) -> Any:
    """What `raw` means to the field at `path`, by the field's own type and validators."""
    owner = Settings if len(path) == 1 else Settings.model_fields[path[0]].annotation
    assert isinstance(owner, type) and issubclass(owner, BaseModel)
    field = owner.model_fields[path[-1]]
    kind: Any = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    return _plain(TypeAdapter(kind).validate_python(raw))


@pytest.mark.parametrize("name", sorted(n for n in documented() if n in Settings.variables()))
def test_each_documented_variable_lands_where_the_settings_say(name: str) -> None:
    """NAME=value (the example's value, else a sample in the runbooks' format) is read, and the
    setting it names holds exactly that value, by the field's own type."""
    raw = documented()[name] or SAMPLES[name]
    path = Settings.variables()[name]
    settings = Settings.load({name: raw, **COMPANIONS.get(name, {})})
    got = functools.reduce(getattr, path, settings)
    assert _plain(got) == _expected(path, raw)


def test_every_name_accepted_before_is_read_and_documented() -> None:
    """No variable operators set today has lost its meaning, and each is in config/env.example."""
    assert ACCEPTED_BEFORE - set(Settings.variables()) == set()
    assert set(Settings.variables()) - set(documented()) == set()


def test_queue_table_variables_in_the_example_are_read() -> None:
    """The example's per-queue and per-job overrides change the queue table."""
    overrides = {n: v for n, v in documented().items() if n not in Settings.variables()}
    assert overrides, "config/env.example shows no queue-table override"
    table = Settings.load(overrides).queues
    assert table.queue("document-processing").concurrency == int(overrides["DOCUMENT_PROCESSING_CONCURRENCY"])
    send_email = table.jobs["send_email"].retry
    assert send_email is not None and send_email.attempts == int(overrides["SEND_EMAIL_ATTEMPTS"])


@pytest.mark.parametrize(("name", "raw", "path", "meaning"), SPELLINGS, ids=[s[0] + "=" + s[1] for s in SPELLINGS])
def test_the_runbooks_spellings_keep_their_meaning(name: str, raw: str, path: tuple[str, ...], meaning: Any) -> None:
    """`warn`, `1`, `false`, a list with stray commas and spaces: each means what it meant."""
    assert _plain(functools.reduce(getattr, path, Settings.load({name: raw}))) == meaning


def test_names_are_read_in_any_case_and_blank_means_unset(tmp_path: Path) -> None:
    """`smtp_host` is SMTP_HOST (as before), and an empty value keeps the default."""
    settings = Settings.load({"smtp_host": "mail.internal", "SMTP_PORT": "", "health_port": "3200"})
    assert (settings.smtp.host, settings.smtp.port, settings.health.port) == ("mail.internal", 587, 3200)
