"""Settings of what Workhorse connects to: Redis, PostgreSQL and each external provider, one
model per service, each handed whole to the client that needs it (never the whole Settings).

A model's fields are its environment variables without the prefix: `SmtpSettings.host` is
SMTP_HOST (app/config/settings.py explains how names are read).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from app.config.sources import CommaList
from app.config.urls import SENTINEL_SCHEMES, check_url, parse_sentinel_url


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class RedisSettings(_Section):
    url: str | None = Field(None, description="redis://, rediss:// (TLS), unix:// or redis+sentinel://; "
                                              "else REDIS_SENTINELS or REDIS_HOST and friends")
    host: str | None = None
    port: int = Field(6379, ge=1, le=65535)
    password: SecretStr | None = None
    username: str | None = None
    db: int = Field(0, ge=0, le=1000)
    tls: bool = Field(False, description="TLS to Redis (and to the sentinels, with REDIS_SENTINELS)")
    # Sentinel: the primary is whichever server these sentinels name for the master; every
    # connection asks them again after losing its server (app/queue/sentinel.py).
    sentinels: CommaList = Field([], description="host:port of each sentinel (comma-separated); with "
                                                 "REDIS_SENTINEL_MASTER, instead of REDIS_HOST")
    sentinel_master: str | None = Field(None, validate_default=True,
                                        description="the master's name in the sentinels' configuration")
    sentinel_username: str | None = None
    sentinel_password: SecretStr | None = Field(None, description="the sentinels' own password (their requirepass)")
    # Durable acknowledgements (app/queue/durability.py): an enqueue or finish is confirmed only
    # once this many replicas have it, so a failover cannot take back what was acknowledged.
    min_replicas_ack: int = Field(0, ge=0, le=64, description="replicas that must confirm each enqueue and "
                                                              "finish (WAIT) before it is acknowledged; 0: none")
    replicas_ack_timeout_ms: int = Field(1000, ge=1, le=60_000,
                                         description="how long WAIT may take before the write fails")
    # Stock arq clients announce nothing; keyspace notifications on the queues wake workers at
    # once (app/queue/notifications.py): `enable` turns them on where CONFIG SET is allowed,
    # `use` only listens, `off` leaves their jobs to the fallback sweep.
    keyspace_notifications: Literal["enable", "use", "off"] = "enable"

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        return check_url(value, ("redis", "rediss", "unix", *SENTINEL_SCHEMES), "redis://host:6379/0")

    @field_validator("sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: list[str]) -> list[str]:
        if value:  # checked as the URL they become: host, host:port or [v6]:port each
            parse_sentinel_url(f"redis+sentinel://{','.join(value)}/m")
        return value

    @field_validator("sentinel_master")
    @classmethod
    def _master_named(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("sentinels") and not value:
            raise ValueError("REDIS_SENTINELS needs the master's name the sentinels know (e.g. mymaster)")
        return value

    @property
    def dsn(self) -> str | None:
        """REDIS_URL, else a Sentinel URL built from REDIS_SENTINELS, else a URL built from
        REDIS_HOST (each with PASSWORD, USERNAME, DB and TLS)."""
        if self.url:
            return self.url
        if self.sentinels:
            return self._sentinel_dsn()
        if not self.host:
            return None
        scheme = "rediss" if self.tls else "redis"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{self._userinfo()}{host}:{self.port}/{self.db}"

    def _userinfo(self) -> str:
        if self.password is None:
            return ""
        user = quote(self.username or "", safe="")
        return f"{user}:{quote(self.password.get_secret_value(), safe='')}@"

    def _sentinel_dsn(self) -> str:
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        query = []
        if self.sentinel_username:
            query.append(f"sentinel_username={quote(self.sentinel_username, safe='')}")
        if self.sentinel_password is not None:
            query.append(f"sentinel_password={quote(self.sentinel_password.get_secret_value(), safe='')}")
        master = quote(self.sentinel_master or "", safe="")
        return (f"{scheme}://{self._userinfo()}{','.join(self.sentinels)}/{master}/{self.db}"
                + (f"?{'&'.join(query)}" if query else ""))

    @property
    def variable(self) -> str:
        """The variable the connection came from, for messages."""
        if self.url or not (self.sentinels or self.host):
            return "REDIS_URL"
        return "REDIS_SENTINELS" if self.sentinels else "REDIS_HOST"


class DatabaseSettings(_Section):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        return check_url(value, ("postgres", "postgresql"), "postgresql://user@host:5432/db")


class OpenAISettings(_Section):
    api_key: SecretStr | None = None
    base_url: str | None = None
    embedding_model: str = "text-embedding-3-small"
    vision_model: str = "gpt-4o-mini"
    chat_model: str = "gpt-4o-mini"
    timeout_s: float = Field(60.0, gt=0)


class SmtpSettings(_Section):
    host: str | None = None
    port: int = Field(587, ge=1, le=65535)
    user: str | None = None
    password: SecretStr | None = None
    secure: Literal["starttls", "tls", "none"] = "starttls"
    from_email: str = "no-reply@localhost"
    from_name: str = "Workhorse"
    timeout_s: float = Field(30.0, gt=0)
    pool_size: int = Field(10, ge=1, le=100, description="SMTP connections kept open and used at once")


class TwilioSettings(_Section):
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    phone_number: str | None = None
    base_url: str | None = Field(None, description="API root; only for tests and proxies")
    timeout_s: float = Field(10.0, gt=0)


class GoogleSettings(_Section):
    client_id: str | None = None
    client_secret: SecretStr | None = None
    token_url: str = Field("https://oauth2.googleapis.com/token", description="OAuth token endpoint")
    calendar_base_url: str = Field("https://www.googleapis.com/calendar/v3", description="Calendar v3 root")
    timeout_s: float = Field(30.0, gt=0)


class WebhookSettings(_Section):
    secret: SecretStr | None = None
    allowed_hosts: CommaList = Field([], description="hosts allowed despite SSRF rules (comma-separated)")
    timeout_s: float = Field(10.0, gt=0)


class S3Settings(_Section):
    bucket: str | None = None
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (Spaces, MinIO); empty for AWS")
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None


class OtelSettings(_Section):
    """Tracing: with an endpoint, each job is a span exported over OTLP/HTTP (app/queue/tracing.py)."""

    exporter_otlp_endpoint: str | None = Field(
        None, pattern=r"^https?://", description="OTLP/HTTP collector root (/v1/traces is appended); unset: off")
    service_name: str = Field("workhorse", min_length=1, description="service.name of the spans")
