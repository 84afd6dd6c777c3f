"""Pure rules of the notification layer: claims, SMS trimming, reminder wording, reminder times."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from app.calendar.events import reminder_times
from app.calendar.when import describe, relative, zone
from app.config import Settings
from app.notify.ledger import Existing, judge
from app.providers.messages import Attachment, Email
from app.providers.mime import build_message
from app.providers.twilio import MAX_SMS_CHARS, fit_sms
from app.providers.webhook import is_public
from tests.support.mail import parse

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("status", "job_id", "age_s", "verdict"), [
    ("SENT", "job-1", 0, "already_sent"),
    ("SENT", "job-2", 10_000, "already_sent"),
    ("FAILED", "job-2", 0, "claim"),
    ("SKIPPED", "job-2", 0, "claim"),
    ("SENDING", "job-1", 0, "claim"),       # our own earlier run died mid-send
    ("SENDING", "job-2", 5, "busy"),        # someone else is sending right now
    ("SENDING", "job-2", 121, "claim"),     # ... or was, and is gone
])
def test_claim_rules(status: str, job_id: str, age_s: float, verdict: str) -> None:
    """Only SENT refuses for good; a live claim by another job waits; a stale one is taken over."""
    existing = Existing(status, "job-1", NOW - dt.timedelta(seconds=age_s))
    assert judge(existing, job_id, NOW, stale_after_s=120) == verdict
    assert judge(None, job_id, NOW, stale_after_s=120) == "claim"


def test_sms_is_trimmed_to_two_segments_keeping_the_link_whole() -> None:
    """Short texts pass unchanged (whitespace folded); long ones end in '… <link>' within 306."""
    assert fit_sms("See  you\nsoon", None) == "See you soon"
    trimmed = fit_sms("x" * 1000, "https://app.test/events/1")
    assert len(trimmed) == MAX_SMS_CHARS and trimmed.endswith("… https://app.test/events/1")
    assert fit_sms("y" * 400, None).endswith("…") and len(fit_sms("y" * 400, None)) <= MAX_SMS_CHARS


def test_reminder_wording_in_the_readers_zone() -> None:
    """Relative time rounds sensibly; date and time are local to the reader, with the zone's name."""
    assert [relative(dt.timedelta(minutes=m)) for m in (0, 1, 15, 60, 119, 24 * 60, 72 * 60)] == [
        "now", "in 1 minute", "in 15 minutes", "in 1 hour", "in 2 hours", "in 24 hours", "in 3 days"]
    when = describe(NOW + dt.timedelta(hours=2), NOW, ZoneInfo("Europe/Berlin"))
    assert (when.relative, when.date, when.time, when.zone) == ("in 2 hours", "Tuesday, 1 December 2026",
                                                                "15:00", "CET")
    assert zone("Not/AZone", "America/New_York") == ZoneInfo("America/New_York")
    assert zone(None, "") == ZoneInfo("UTC")


def test_reminders_in_the_past_are_not_created() -> None:
    """24 h and 2 h before the start, a follow-up an hour after the end when asked; none in the past."""
    start, end = NOW + dt.timedelta(hours=30), NOW + dt.timedelta(hours=31)
    assert reminder_times(start, end, NOW, follow_up=True) == {
        "24h": NOW + dt.timedelta(hours=6), "2h": NOW + dt.timedelta(hours=28),
        "follow_up": end + dt.timedelta(hours=1)}
    soon = NOW + dt.timedelta(hours=3)
    assert set(reminder_times(soon, soon, NOW, follow_up=False)) == {"2h"}


@pytest.mark.parametrize(("address", "public"), [
    ("93.184.215.14", True), ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.1", False),
    ("169.254.169.254", False), ("::1", False), ("fd00::1", False), ("0.0.0.0", False), ("224.0.0.1", False),
])
def test_only_public_addresses_receive_webhooks(address: str, public: bool) -> None:
    """Loopback, private, link-local (cloud metadata), unspecified and multicast are refused."""
    assert is_public(address) is public


def test_an_email_resent_after_a_crash_carries_the_same_message_id() -> None:
    """The Message-ID depends on the idempotency key only; keys differ, ids differ."""
    settings = Settings.load({"SMTP_FROM_EMAIL": "reminders@example.com"})
    message = Email(to="ana@example.com", to_name="Zoë", subject="Réunion", text="hé", html="<p>hé</p>",
                    attachments=(Attachment("invite.ics", b"BEGIN:VCALENDAR", "text/calendar; method=REQUEST"),))
    first, again, other = (
        parse(build_message(message, key, settings.smtp))
        for key in ("reminder:1:email:ana@example.com", "reminder:1:email:ana@example.com",
                    "reminder:2:email:ana@example.com"))
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]
    assert first["Message-ID"].endswith("@example.com>")
    assert (first["To"], first["Subject"]) == ("Zoë <ana@example.com>", "Réunion")
    [invite] = first.iter_attachments()
    assert invite.get_content_type() == "text/calendar" and invite.get_param("method") == "REQUEST"
    assert invite.get_filename() == "invite.ics"
