"""Instants written briefly in tests: aware datetimes in UTC."""

from __future__ import annotations

import datetime as dt


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """That wall-clock time in UTC."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)
