"""The cron table (app/cron.py): each entry's schedule read in its time zone, and the cron file's
overrides (schedule, time zone, enabled), refused in one line naming the file and entry.

Pure: no Redis, no PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import PROJECT_ROOT, Settings, SettingsError
from app.cron import CRON, CronEntry, CronOverride, apply_overrides, cron_table
from tests.support.times import utc


def test_an_entry_reads_its_schedule_in_its_time_zone() -> None:
    """A CronEntry's expression is its schedule in its time zone; UTC unless given."""
    berlin = CronEntry("report", "0 9 * * *", job="report", time_zone="Europe/Berlin")
    assert berlin.expr.next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 8)
    assert CronEntry("report", "0 9 * * *", job="report").expr.next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 9)


def cron_file(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "cron.toml"
    path.write_text(text)
    return Settings.load({"CRON_FILE": str(path)})


def test_without_a_cron_file_the_defaults_run(tmp_path: Path) -> None:
    """A missing cron file means no overrides."""
    assert cron_table(Settings.load({"CRON_FILE": str(tmp_path / "absent.toml")})) == CRON


def test_the_shipped_cron_file_keeps_the_defaults() -> None:
    """config/cron.toml documents every entry with its values commented out."""
    assert cron_table(Settings.load({"CRON_FILE": str(PROJECT_ROOT / "config/cron.toml")})) == CRON


def test_the_cron_file_changes_schedules_and_drops_disabled_entries(tmp_path: Path) -> None:
    """An entry's schedule and time zone can be changed; `enabled = false` drops it."""
    settings = cron_file(tmp_path, """
        [entries.sla-scan]
        schedule = "*/10 * * * *"
        time_zone = "Europe/Berlin"

        [entries.reminder-scan]
        enabled = false
    """)
    table = cron_table(settings)
    sla = next(e for e in table if e.name == "sla-scan")
    assert "reminder-scan" not in {e.name for e in table}
    assert (sla.name, sla.schedule, sla.time_zone, sla.job) == ("sla-scan", "*/10 * * * *", "Europe/Berlin", "sla_scan")
    assert sla.expr.next_after(utc(2026, 1, 1, 12, 1)) == utc(2026, 1, 1, 12, 10)


def test_the_cron_file_can_enable_an_entry_that_is_off_by_default(tmp_path: Path) -> None:
    """`enabled = true` turns on an entry the table declares disabled."""
    table = (CronEntry("nightly", "@daily", job="nightly", enabled=False),)
    (nightly,) = apply_overrides(table, {"nightly": CronOverride(enabled=True)}, tmp_path / "cron.toml")
    assert nightly.enabled


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ('[entries.sla-scna]\nschedule = "@daily"', "entry 'sla-scna': unknown entry; known: sla-scan, reminder-scan"),
        ('[entries.sla-scan]\nschedule = "*/10 * * *"', "entry 'sla-scan': '*/10 * * *': expected 5 fields"),
        ('[entries.sla-scan]\nschedule = "@reboot"', "entry 'sla-scan': '@reboot': @reboot runs once at boot"),
        ('[entries.sla-scan]\ntime_zone = "Mars/Olympus"', "entry 'sla-scan': unknown time zone 'Mars/Olympus'"),
        ('[entries.sla-scan]\nenabled = "no"', "entry 'sla-scan': enabled: Input should be a valid boolean"),
        ('[entries.sla-scan]\nevery = "5m"', "entry 'sla-scan': every: Extra inputs are not permitted"),
        ('[sla-scan]\nschedule = "@daily"', "expected only [entries.NAME] tables"),
        ("[entries.sla-scan\n", "Expected ']'"),
    ],
)
def test_a_bad_cron_file_names_the_file_and_entry(tmp_path: Path, toml: str, says: str) -> None:
    """An unknown entry, a bad schedule or time zone, or a bad value fails with one line naming both."""
    with pytest.raises(SettingsError) as err:
        cron_table(cron_file(tmp_path, toml))
    message = str(err.value)
    assert str(tmp_path / "cron.toml") in message and says in message
    assert "\n" not in message
