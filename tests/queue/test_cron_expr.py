"""Cron expressions (app/queue/cron_expr.py): crontab(5) semantics, and time zones across DST
changes.

Pure: no Redis, no PostgreSQL. The expression tables follow crontab(5)'s own examples.
"""

from __future__ import annotations

import datetime as dt

import pytest

from app.queue.cron_expr import CronExpr, CronSyntaxError
from tests.support.times import utc


def fires(expr: CronExpr, after: dt.datetime, count: int) -> list[dt.datetime]:
    """The next `count` times `expr` fires after `after`, each asked from the previous one."""
    times = []
    for _ in range(count):
        after = expr.next_after(after)
        times.append(after)
    return times


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        # Day of month and weekday both restricted: either matches (Vixie cron ORs them).
        ("0 9 1 * 1", utc(2026, 1, 1), [utc(2026, 1, 1, 9), utc(2026, 1, 5, 9), utc(2026, 1, 12, 9),
                                        utc(2026, 1, 19, 9), utc(2026, 1, 26, 9), utc(2026, 2, 1, 9),
                                        utc(2026, 2, 2, 9)]),
        # crontab(5): "4:30 am on the 1st and 15th of each month, plus every Friday".
        ("30 4 1,15 * 5", utc(2026, 1, 1, 5), [utc(2026, 1, 2, 4, 30), utc(2026, 1, 9, 4, 30),
                                               utc(2026, 1, 15, 4, 30), utc(2026, 1, 16, 4, 30)]),
        # One of them `*`: both must match (Sundays in July only).
        ("0 0 * JUL SUN", utc(2026, 1, 1), [utc(2026, 7, 5), utc(2026, 7, 12)]),
        ("5 0 * * *", utc(2026, 1, 1), [utc(2026, 1, 1, 0, 5), utc(2026, 1, 2, 0, 5)]),
        ("15 14 1 * *", utc(2026, 1, 1), [utc(2026, 1, 1, 14, 15), utc(2026, 2, 1, 14, 15)]),
        ("0 22 * * 1-5", utc(2026, 1, 2, 23), [utc(2026, 1, 5, 22), utc(2026, 1, 6, 22)]),
        ("23 0-23/2 * * *", utc(2026, 1, 1), [utc(2026, 1, 1, 0, 23), utc(2026, 1, 1, 2, 23)]),
        ("0 0,12 1 */2 *", utc(2026, 1, 1, 6), [utc(2026, 1, 1, 12), utc(2026, 3, 1), utc(2026, 3, 1, 12)]),
        # Names, in any case, alone and in ranges.
        ("5 4 * * sun", utc(2026, 1, 1), [utc(2026, 1, 4, 4, 5), utc(2026, 1, 11, 4, 5)]),
        ("0 0 * * MON-FRI", utc(2026, 1, 2), [utc(2026, 1, 5), utc(2026, 1, 6)]),
        ("0 0 1 JAN *", utc(2026, 1, 1), [utc(2027, 1, 1)]),
        ("0 0 1 jan-mar *", utc(2026, 1, 1), [utc(2026, 2, 1), utc(2026, 3, 1), utc(2027, 1, 1)]),
        # Sunday is 0 or 7.
        ("0 12 * * 7", utc(2026, 1, 1), [utc(2026, 1, 4, 12), utc(2026, 1, 11, 12)]),
        ("0 12 * * 0", utc(2026, 1, 1), [utc(2026, 1, 4, 12), utc(2026, 1, 11, 12)]),
        ("0 12 * * 5-7", utc(2026, 1, 1), [utc(2026, 1, 2, 12), utc(2026, 1, 3, 12), utc(2026, 1, 4, 12),
                                           utc(2026, 1, 9, 12)]),
        # Steps over a range and over `*`.
        ("10-50/20 * * * *", utc(2026, 1, 1, 12), [utc(2026, 1, 1, 12, 10), utc(2026, 1, 1, 12, 30),
                                                   utc(2026, 1, 1, 12, 50), utc(2026, 1, 1, 13, 10)]),
        ("*/15 * * * *", utc(2026, 1, 1, 12, 7), [utc(2026, 1, 1, 12, 15), utc(2026, 1, 1, 12, 30),
                                                  utc(2026, 1, 1, 12, 45), utc(2026, 1, 1, 13)]),
        # Nicknames.
        ("@hourly", utc(2026, 1, 1, 12, 7), [utc(2026, 1, 1, 13), utc(2026, 1, 1, 14)]),
        ("@daily", utc(2026, 1, 1, 12), [utc(2026, 1, 2), utc(2026, 1, 3)]),
        ("@midnight", utc(2026, 1, 1, 12), [utc(2026, 1, 2), utc(2026, 1, 3)]),
        ("@weekly", utc(2026, 1, 1), [utc(2026, 1, 4), utc(2026, 1, 11)]),
        ("@monthly", utc(2026, 1, 1), [utc(2026, 2, 1), utc(2026, 3, 1)]),
        ("@yearly", utc(2026, 1, 1), [utc(2027, 1, 1), utc(2028, 1, 1)]),
        ("@annually", utc(2026, 1, 1), [utc(2027, 1, 1), utc(2028, 1, 1)]),
    ],
)
def test_expressions_fire_as_crontab5_says(text: str, after: dt.datetime, expected: list[dt.datetime]) -> None:
    """Each expression fires at crontab(5)'s times, in UTC, each strictly after the last."""
    assert fires(CronExpr.parse(text), after, len(expected)) == expected


def test_next_after_is_strictly_later_and_minute_aligned() -> None:
    """A time on a tick gives the next tick; seconds and microseconds are dropped, never rounded back."""
    every_minute = CronExpr.parse("* * * * *")
    assert every_minute.next_after(utc(2026, 1, 1, 12)) == utc(2026, 1, 1, 12, 1)
    assert every_minute.next_after(utc(2026, 1, 1, 12).replace(second=59, microsecond=1)) == utc(2026, 1, 1, 12, 1)


def test_next_after_refuses_a_naive_time() -> None:
    """A naive time would be read in the machine's zone; it is refused instead."""
    with pytest.raises(ValueError, match="aware"):
        CronExpr.parse("* * * * *").next_after(dt.datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("61 * * * *", "bad minute field"),
        ("0 24 * * *", "bad hour field"),
        ("0 0 0 * *", "bad day-of-month field"),
        ("0 0 31 2 *", "bad day-of-month field"),  # February never has a 31st
        ("0 0 * 13 *", "bad month field"),
        ("0 0 * FOO *", "bad month field"),
        ("0 0 * * 8", "bad day-of-week field"),
        ("0 0 * * MON-JAN", "bad day-of-week field"),
        ("*/0 * * * *", "bad minute field"),
        ("30-10 * * * *", "bad minute field"),
        ("x * * * *", "minute field 'x' is not crontab(5) syntax"),
        ("* * * *", "expected 5 fields"),
        ("0 * * * * *", "expected 5 fields"),  # cronsim's seconds field is not crontab(5)
        ("", "expected 5 fields"),
        ("0 0 L * *", "day of month field 'L'"),  # Quartz's last day of month
        ("0 0 15W * *", "day of month field '15W'"),
        ("0 0 * * MON#2", "weekday field 'MON#2'"),
        ("0 0 * * 5L", "weekday field '5L'"),
        ("@reboot", "@reboot runs once at boot"),
        ("@fortnightly", "unknown nickname"),
    ],
)
def test_a_bad_expression_says_what_is_wrong(text: str, says: str) -> None:
    """A bad expression raises CronSyntaxError quoting the text and naming the problem."""
    with pytest.raises(CronSyntaxError) as err:
        CronExpr.parse(text)
    assert repr(text) in str(err.value)
    assert says in str(err.value)


def test_an_unknown_time_zone_is_refused() -> None:
    """A time zone must be an IANA name that the zone database knows."""
    with pytest.raises(CronSyntaxError, match="unknown time zone 'Europe/Gotham'"):
        CronExpr.parse("0 9 * * *", "Europe/Gotham")


@pytest.mark.parametrize(
    ("text", "zone", "after", "expected"),
    [
        # Spring forward in Berlin (02:00 CET -> 03:00 CEST): 02:30 does not exist that night
        # and fires at 03:00 CEST, right after the gap.
        ("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12),
         [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]),
        # Fall back in Berlin (03:00 CEST -> 02:00 CET): 02:30 happens twice and fires once.
        ("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12),
         [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]),
        # Fall back in New York: 09:00 stays 09:00 local, so the UTC instant moves by an hour.
        ("0 9 * * *", "America/New_York", utc(2026, 10, 30, 12),
         [utc(2026, 10, 30, 13), utc(2026, 10, 31, 13), utc(2026, 11, 1, 14), utc(2026, 11, 2, 14)]),
        # 01:30 happens twice on 2026-11-01 in New York; it fires at the first (EDT) only...
        ("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12),
         [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]),
        # ... and asked from inside the second 01:00-02:00 (EST), the answer is tomorrow, not
        # the first 01:30 that is already past.
        ("30 1 * * *", "America/New_York", utc(2026, 11, 1, 6, 10), [utc(2026, 11, 2, 6, 30)]),
        # Expressions with `*` in minute or hour follow elapsed time: the repeated hour has its
        # ticks twice, the skipped hour none.
        ("*/30 * * * *", "America/New_York", utc(2026, 11, 1, 4, 50),
         [utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6), utc(2026, 11, 1, 6, 30)]),
        ("*/30 * * * *", "Europe/Berlin", utc(2026, 3, 29, 0, 10),
         [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 30)]),
        # A weekday is the zone's weekday: Monday 00:30 in Tokyo is Sunday 15:30 UTC.
        ("30 0 * * MON", "Asia/Tokyo", utc(2026, 1, 1), [utc(2026, 1, 4, 15, 30), utc(2026, 1, 11, 15, 30)]),
    ],
)
def test_a_time_zone_reads_the_fields_as_its_wall_clock(
    text: str, zone: str, after: dt.datetime, expected: list[dt.datetime]
) -> None:
    """In a time zone the fields are local wall-clock times; the answers are exact UTC instants."""
    assert fires(CronExpr.parse(text, zone), after, len(expected)) == expected
