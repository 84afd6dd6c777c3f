"""The job list: every JobSpec of the product, and the registry built from it (with any job
modules WORKHORSE_EXTRA_JOBS names). The families (one module or package each) never import each
other (pyproject.toml's import contracts)."""

from __future__ import annotations

import importlib
from typing import Any

from app.config import Settings, SettingsError
from app.jobs import calendar_sync, documents, embeddings, intake, notifications, ping, reminders, scheduling, sla
from app.queue.registry import JobSpec, Registry

ALL: tuple[JobSpec[Any], ...] = (
    ping.SPEC,
    documents.SPEC,
    embeddings.SPEC,
    intake.SPEC,
    *calendar_sync.SPECS,
    *reminders.SPECS,
    *notifications.SPECS,
    sla.SPEC,
    *scheduling.SPECS,
)


def build_registry(settings: Settings) -> Registry:
    """The registry of ALL, plus the SPECS of each module named in WORKHORSE_EXTRA_JOBS."""
    extra: list[JobSpec[Any]] = []
    for name in settings.workhorse.extra_jobs:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise SettingsError(f"invalid setting WORKHORSE_EXTRA_JOBS: cannot import {name}: {exc}") from None
        extra.extend(getattr(module, "SPECS", ()))
    return Registry((*ALL, *extra), settings.queues)
