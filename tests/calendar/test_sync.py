"""The sync core (app/calendar/sync.py): what one page of Google events becomes, as a pure plan of
upserts and cancellations."""

from __future__ import annotations

import datetime as dt
from typing import Any

from app.calendar.sync import plan_page


def test_the_page_plan_handles_all_day_zones_cancellations_and_hostile_items() -> None:
    """All-day events are midnight to midnight in the calendar's zone; an event keeps its own
    zone; cancelled, free and declined events cancel; broken items are counted, not stored."""
    items: list[dict[str, Any]] = [
        {"id": "allday", "start": {"date": "2030-03-01"}, "end": {"date": "2030-03-02"}},
        {"id": "tokyo", "summary": "Call\x00", "start": {"dateTime": "2030-03-01T09:00:00+09:00",
                                                         "timeZone": "Asia/Tokyo"},
         "end": {"dateTime": "2030-03-01T08:00:00+09:00"}},
        {"id": "gone", "status": "cancelled"},
        {"id": "free", "transparency": "transparent", "start": {"date": "2030-03-01"}, "end": {"date": "2030-03-02"}},
        {"id": "declined", "attendees": [{"email": "me@x", "self": True, "responseStatus": "declined"}],
         "start": {"date": "2030-03-01"}, "end": {"date": "2030-03-02"}},
        {"id": "bad\x00id", "start": {"date": "2030-03-01"}, "end": {"date": "2030-03-02"}},
        {"id": "badtime", "start": {"dateTime": "tomorrow"}, "end": {}},
        {"id": "badzone", "start": {"dateTime": "2030-03-01T09:00:00Z", "timeZone": "Mars/Olympus"},
         "end": {"dateTime": "2030-03-01T10:00:00Z"}},
        {"no": "id"},
        {"id": "surrogate\ud800", "start": {"date": "2030-03-01"}, "end": {"date": "2030-03-02"}},
        {"id": "odd", "summary": "half \ud800 pair", "start": {"date": "2030-03-01"}, "end": {"date": "2030-03-02"}},
    ]
    plan = plan_page(items, "Europe/Berlin")
    assert set(plan.upserts) == {"allday", "tokyo", "badzone", "odd"}
    assert plan.cancels == {"gone", "free", "declined"} and plan.invalid == 4
    assert plan.upserts["odd"].title == "half ? pair"
    allday, tokyo = plan.upserts["allday"], plan.upserts["tokyo"]
    assert allday.all_day and allday.time_zone == "Europe/Berlin"
    assert allday.start_at == dt.datetime(2030, 2, 28, 23, tzinfo=dt.UTC)
    assert allday.end_at - allday.start_at == dt.timedelta(days=1)
    assert (tokyo.title, tokyo.time_zone, tokyo.all_day) == ("Call", "Asia/Tokyo", False)
    assert tokyo.start_at == dt.datetime(2030, 3, 1, tzinfo=dt.UTC) and tokyo.end_at == tokyo.start_at
    assert plan.upserts["badzone"].time_zone == "UTC"
