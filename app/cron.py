"""The cron table. A cron entry only enqueues its job; the job runs on its own queue.

Schedules are crontab(5) expressions read in the entry's IANA time zone (UTC unless given);
app/queue/cron_expr.py says how daylight saving time is handled. The defaults are here;
CRON_FILE (config/cron.toml) may change an entry's schedule, time zone or enabled flag, and
`cron_table()` applies it. Missed ticks (no process running at the time) are not caught up:
the next tick runs as usual.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from app.config import Settings, SettingsError
from app.queue.cron_expr import CronExpr, CronSyntaxError


@dataclass(frozen=True, slots=True)
class CronEntry:
    """One row of the cron table; a bad schedule or time zone raises CronSyntaxError when built."""

    name: str
    schedule: str
    """crontab(5) text: five fields (`*/15 * * * *`) or a nickname (`@hourly`)."""
    job: str
    payload: dict[str, Any] = field(default_factory=dict)
    time_zone: str = "UTC"
    enabled: bool = True
    expr: CronExpr = field(init=False, repr=False, compare=False)
    """`schedule` parsed, read in `time_zone`."""

    def __post_init__(self) -> None:
        # Frozen: the parsed expression is set once, here.
        object.__setattr__(self, "expr", CronExpr.parse(self.schedule, self.time_zone))


CRON: tuple[CronEntry, ...] = (
    CronEntry("sla-scan", "*/15 * * * *", job="sla_scan"),
    CronEntry("reminder-scan", "*/5 * * * *", job="scan_reminders"),
    # Calendar sync: an incremental sync of every active connection, and a full one nightly.
    CronEntry("calendar-sync", "*/15 * * * *", job="calendar_sync_fanout", payload={"syncType": "incremental"}),
    CronEntry("calendar-full-sync", "30 3 * * *", job="calendar_sync_fanout", payload={"syncType": "full"}),
)


class CronOverride(BaseModel):
    """One `[entries.NAME]` table of the cron file; an absent value keeps the default."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    schedule: str | None = None
    time_zone: str | None = None
    enabled: bool | None = None


def cron_table(settings: Settings) -> tuple[CronEntry, ...]:
    """The enabled entries of CRON after the overrides of `settings.cron_file` (none if it is missing)."""
    path = settings.cron_file
    entries = apply_overrides(CRON, read_overrides(path), path)
    return tuple(e for e in entries if e.enabled)


def read_overrides(path: Path) -> dict[str, CronOverride]:
    """The `[entries.NAME]` tables of the cron file; SettingsError naming the file on a bad one."""
    tables = _entry_tables(path)
    overrides: dict[str, CronOverride] = {}
    for name, row in tables.items():
        try:
            overrides[name] = CronOverride.model_validate(row)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "table"
            raise SettingsError(f"invalid cron file {path}: entry {name!r}: {where}: {first['msg']}") from None
    return overrides


def _entry_tables(path: Path) -> dict[str, Any]:
    """The file's `entries` table, empty when the file is missing."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"invalid cron file {path}: {exc}") from None
    tables = raw.get("entries", {})
    if set(raw) - {"entries"} or not isinstance(tables, dict):
        raise SettingsError(f"invalid cron file {path}: expected only [entries.NAME] tables")
    return tables


def apply_overrides(
    entries: tuple[CronEntry, ...], overrides: dict[str, CronOverride], path: Path
) -> tuple[CronEntry, ...]:
    """`entries` with each override applied; SettingsError for an unknown entry or a bad value."""
    known = {e.name: e for e in entries}
    unknown = [name for name in overrides if name not in known]
    if unknown:
        raise SettingsError(
            f"invalid cron file {path}: entry {unknown[0]!r}: unknown entry; known: {', '.join(known)}"
        )
    return tuple(_override(e, overrides[e.name], path) if e.name in overrides else e for e in entries)


def _override(entry: CronEntry, override: CronOverride, path: Path) -> CronEntry:
    changes = override.model_dump(exclude_none=True)
    try:
        return dataclasses.replace(entry, **changes)
    except CronSyntaxError as exc:
        raise SettingsError(f"invalid cron file {path}: entry {entry.name!r}: {exc}") from None
