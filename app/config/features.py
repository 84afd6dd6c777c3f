"""Settings of what the job families do: calendar sync, storage and OCR, embeddings, reminders,
the scheduling agent and the outbox relay, one model per concern, handed to the code that needs it.

A model's fields are its environment variables without the prefix: `OcrSettings.dpi` is OCR_DPI
(app/config/settings.py explains how names are read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.config.paths import PROJECT_ROOT
from app.config.sources import SecretList


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class CalendarSettings(_Section):
    token_keys: SecretList = Field([], description="Fernet keys, comma-separated; the first encrypts, all decrypt")
    sync_days_back: int = Field(30, ge=0, le=3650)
    sync_days_ahead: int = Field(365, ge=1, le=3650)
    sync_page_size: int = Field(250, ge=100, le=250)
    max_consecutive_failures: int = Field(5, ge=1, le=100)
    push_url: str | None = Field(None, description="public HTTPS push endpoint; unset: no watch channels")
    watch_ttl_s: int = Field(604_800, ge=3600, le=2_592_000)


class StorageSettings(_Section):
    dir: Path = PROJECT_ROOT / ".workhorse" / "storage"
    backend: Literal["local", "s3"] = "local"


class OcrSettings(_Section):
    """Pages and pixels are capped so a decompression bomb fails instead of eating memory."""

    workers: int = Field(0, ge=0, le=64, description="OCR processes; 0 = one per CPU")
    dpi: int = Field(300, ge=72, le=600)
    max_pages: int = Field(200, ge=1)
    max_pixels: int = Field(40_000_000, ge=1, description="per page or image")
    page_timeout_s: float = Field(120.0, gt=0, le=3600, description="tesseract's limit per page")


class EmbeddingSettings(_Section):
    provider: Literal["auto", "openai", "local", "none"] = "auto"
    batch_size: int = Field(100, ge=1, le=100)


class ChunkSettings(_Section):
    tokens: int = Field(500, ge=100, le=1000)
    overlap_tokens: int = Field(50, ge=0, le=200)


class ReminderSettings(_Section):
    """The scan queues due reminders in batches, each sent side by side."""

    batch_size: int = Field(50, ge=1, le=500, description="reminders per send_reminders job")
    send_concurrency: int = Field(20, ge=1, le=200, description="reminders of one batch sent at once")


class SchedulingSettings(_Section):
    time_zone: str = Field("UTC", description="time zone of users without preferences")
    max_task_retries: int = Field(3, ge=0, le=20, description="retry_task runs before NEEDS_REVIEW")


class OutboxSettings(_Section):
    """The transactional outbox (app/queue/outbox/): the relay moves job_outbox rows to the queues."""

    relay: bool = Field(True, description="run the outbox relay in this process (several may: SKIP LOCKED)")
    poll_interval_ms: int = Field(
        100, ge=10, le=60_000, description="poll while the LISTEN connection is down (every 5 s while it is up)")
    batch_size: int = Field(100, ge=1, le=1000, description="rows claimed per transaction")
    archive_after_s: int = Field(
        604_800, ge=0, description="DISPATCHED rows older than this move to job_outbox_archive")
