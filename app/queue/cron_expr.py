"""Cron expressions with the semantics of crontab(5), evaluated in a time zone.

Parsing and matching are cronsim's (Vixie/Debian cron semantics): day of month and weekday
are ORed when both are restricted (neither starts with `*`), names (`MON-FRI`, `JAN`) and
`7` for Sunday are accepted. On top of it, this module maps the `@hourly`-style nicknames to
their five fields (cronsim refuses them), refuses `@reboot`, and refuses what crontab(5) does
not define but cronsim would accept: a sixth (seconds) field and Quartz's `L`, `W` and `#`.
A schedule written here means what it means in a system crontab.

Daylight saving time, as cronsim 2.8 evaluates it (and Debian's cron(8) documents):
- an expression at fixed times (neither minute nor hour starts with `*`, e.g. `30 2 * * *`,
  `@daily`) follows the wall clock: a time skipped when clocks go forward fires at the first
  minute after the gap (02:30 on the spring-forward night in Europe/Berlin fires at 03:00 CEST),
  and a time repeated when clocks go back fires once, at its first occurrence;
- any other expression (`*/15 * * * *`, `@hourly`) follows elapsed time: the skipped hour has no
  ticks, the repeated hour has its ticks twice (an hour apart in UTC).
`next_after` also guarantees its answer is strictly later than its argument, which cronsim does
not inside a repeated hour (it answers the first occurrence even when asked from the second).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

# crontab(5) nicknames; cronsim takes only the five-field forms.
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELD_NAMES = ("minute", "hour", "day of month", "month", "weekday")
_SYNTAX = "minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, weekday 0-7 or SUN-SAT"
# One crontab(5) field: a list of `*` or a value or a range, each with an optional /step; a value
# is a number or a three-letter name. cronsim checks the ranges and which names fit which field.
_TERM = r"(\*|([0-9]+|[A-Za-z]{3})(-([0-9]+|[A-Za-z]{3}))?)(/[0-9]+)?"
_FIELD = re.compile(rf"{_TERM}(,{_TERM})*")
# Evaluating once from any instant surfaces cronsim's range errors (raised when it is built) and
# would catch an expression that never fires.
_PROBE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


class CronSyntaxError(ValueError):
    """A schedule that cannot be used: not crontab(5) syntax, never fires, or an unknown zone."""


@dataclass(frozen=True, slots=True)
class CronExpr:
    """A cron expression and the time zone its fields are read in; checked when built."""

    text: str
    """As written (`@hourly`, `*/15 * * * *`)."""
    time_zone: str = "UTC"
    """IANA name; the fields are wall-clock times in this zone."""
    fields: str = field(init=False, repr=False, compare=False)
    """The five fields cronsim evaluates (a nickname expanded)."""
    zone: dt.tzinfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: the derived fields are set once, here.
        object.__setattr__(self, "fields", _five_fields(self.text))
        object.__setattr__(self, "zone", _zone(self.time_zone))
        try:
            self.next_after(_PROBE)
        except CronSimError as exc:
            raise CronSyntaxError(f"{self.text!r}: {str(exc).lower()} field ({_SYNTAX})") from None

    @classmethod
    def parse(cls, text: str, time_zone: str = "UTC") -> CronExpr:
        """Parse `text` (five fields or a nickname); raise CronSyntaxError saying what is wrong."""
        return cls(text, time_zone)

    def next_after(self, after: dt.datetime) -> dt.datetime:
        """The first time the expression fires strictly after `after` (aware), in UTC."""
        if after.tzinfo is None:
            raise ValueError(f"next_after needs an aware datetime, got {after!r}")
        for fire in CronSim(self.fields, after.astimezone(self.zone)):
            fire_utc = fire.astimezone(dt.UTC)
            if fire_utc > after:  # cronsim may answer an earlier instant inside a repeated hour
                return fire_utc
        raise CronSyntaxError(f"{self.text!r} never fires")


def _five_fields(text: str) -> str:
    """`text` as five crontab(5) fields, a nickname expanded; CronSyntaxError if it is neither."""
    stripped = text.strip()
    if stripped.startswith("@"):
        return _expand_nickname(stripped)
    parts = stripped.split()
    if len(parts) != 5:
        raise CronSyntaxError(
            f"{text!r}: expected 5 fields ({', '.join(FIELD_NAMES)}) or one of {', '.join(NICKNAMES)}"
        )
    for name, part in zip(FIELD_NAMES, parts, strict=True):
        if not _FIELD.fullmatch(part):
            raise CronSyntaxError(
                f"{text!r}: {name} field {part!r} is not crontab(5) syntax (*, numbers, names, a-b ranges, "
                "lists, /steps)"
            )
    return " ".join(parts)


def _expand_nickname(text: str) -> str:
    nickname = text.lower()
    if nickname == "@reboot":
        raise CronSyntaxError(
            f"{text!r}: @reboot runs once at boot, not on a schedule; the cron table only holds schedules "
            "(run start-up work from the process instead)"
        )
    try:
        return NICKNAMES[nickname]
    except KeyError:
        raise CronSyntaxError(f"{text!r}: unknown nickname; known: {', '.join(NICKNAMES)}") from None


def _zone(name: str) -> dt.tzinfo:
    """The zone named `name`; UTC is datetime's own, which cronsim evaluates without DST handling."""
    if name == "UTC":
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronSyntaxError(f"unknown time zone {name!r} (expected an IANA name like 'Europe/Berlin')") from None
