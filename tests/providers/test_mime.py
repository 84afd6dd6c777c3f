"""The email messages we build and send (app/providers/mime.py, app/providers/smtp.py), read back
by the email package: headers, bodies and attachments as given, in wire shape, and delivered
byte for byte."""

from __future__ import annotations

import datetime as dt
import re
from email.header import decode_header, make_header
from email.headerregistry import Address, AddressHeader
from email.message import EmailMessage

import pytest

from app.config import Settings
from app.providers.messages import Attachment, Email
from app.providers.mime import build_message, message_id
from app.providers.smtp import SmtpChannel
from tests.fakes.smtp import SmtpSink
from tests.support.mail import parse

SETTINGS = Settings.load({"SMTP_FROM_EMAIL": "reminders@example.com", "SMTP_FROM_NAME": "Workhorse, Scheduling"})
KEY = "reminder:42:email:ana@example.com"
INVITE = Attachment("invite.ics", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar; method=REQUEST")
BINARY = Attachment("données été.bin", bytes(range(256)) * 5, "application/octet-stream; x-kind=raw; name=blob.bin")
LONG_SUBJECT = "Reminder: " + " ".join(f"item-{i}" for i in range(40))
LONG_UNICODE_SUBJECT = "Erinnerung: Überprüfung der Qualitätsziele für " + "Zoë & Ünal, " * 15 + "🎉"


def mailbox(message: EmailMessage, header: str) -> Address:
    value = message[header]
    assert isinstance(value, AddressHeader)
    [address] = value.addresses
    return address


def assert_wire_shape(raw: bytes) -> None:
    """CRLF line endings only, 7-bit, lines within 78 columns (the Message-ID line may pass them)."""
    assert raw.isascii() and raw.endswith(b"\r\n")
    lines = raw.split(b"\r\n")
    assert not any(b"\r" in line or b"\n" in line for line in lines)
    assert [line for line in lines if len(line) > 78 and not line.startswith(b"Message-ID: ")] == []


@pytest.mark.parametrize(("to_name", "subject"), [
    ("Ana", "Reminder: Quarterly review in 2 hours"),
    (None, "Reminder"),
    ('Smith, Ana "AJ" (ops)', 'Kickoff; "draft", v2 <final>'),
    ('Dr. Anastasia "Ana" Papadopoulou-Smith, Head of Operations, EMEA (acting)', "Kickoff"),
    ('Zoë, Ünal "Q"', "Réunion : café ☕ à 15 h"),
    ("山田 太郎", "会議のお知らせ 四半期レビュー"),
    ("Ana", LONG_SUBJECT),
    ("Ana", LONG_UNICODE_SUBJECT),
    ("Ana\r\nBcc: eve@example.com", "Hi\r\nBcc: eve@example.com"),
    ("  Ana  ", "  spaced   out\tsubject "),
    ("=?utf-8?q?Eve?=", "=?utf-8?b?bm90IGVuY29kZWQ=?= literally"),
    ("Ana", ""),
])
def test_headers_read_back_as_the_original_strings(to_name: str | None, subject: str) -> None:
    """Subject and display names come back as given: as is when plain ASCII (folded when long),
    RFC 2047 encoded-words otherwise; line breaks never start a header of their own. In a display
    name, runs of whitespace come back as single spaces."""
    raw = build_message(Email(to="ana@example.com", to_name=to_name, subject=subject, text="x"), KEY, SETTINGS.smtp)
    assert_wire_shape(raw)
    parsed = parse(raw)
    assert parsed["Subject"] == subject
    to = mailbox(parsed, "To")
    assert (to.display_name, to.addr_spec) == (" ".join((to_name or "").split()), "ana@example.com")
    assert (mailbox(parsed, "From").display_name, mailbox(parsed, "From").addr_spec) == (
        "Workhorse, Scheduling", "reminders@example.com")
    assert parsed["Message-ID"] == message_id(KEY, "reminders@example.com")
    assert parsed["MIME-Version"] == "1.0" and isinstance(parsed["Date"].datetime, dt.datetime)
    assert parsed.get_all("Bcc") is None
    assert all(not part.defects for part in parsed.walk())


def test_a_short_ascii_subject_goes_out_as_is() -> None:
    """No encoded-words where none are needed; long ASCII subjects are folded at spaces."""
    short = Email(to="ana@example.com", to_name="Ana", subject="Reminder: Kickoff", text="x")
    raw = build_message(short, KEY, SETTINGS.smtp)
    assert b"\r\nSubject: Reminder: Kickoff\r\n" in raw and b"\r\nTo: Ana <ana@example.com>\r\n" in raw
    long = build_message(Email(to="ana@example.com", subject=LONG_SUBJECT, text="x"), KEY, SETTINGS.smtp)
    assert b"=?" not in long and b"\r\n item-" in long


def test_a_long_non_ascii_name_is_split_into_encoded_words_readers_join() -> None:
    """Each encoded-word stays within RFC 2047's 75 characters and holds whole characters.
    RFC 2047 6.2 decoding (email.header) joins them into the original name; Python 3.11's
    address parser puts spaces between them (CPython gh-128110) but reads the address."""
    name = "山田太郎" * 12 + " Zoë"
    parsed = parse(build_message(Email(to="ana@example.com", to_name=name, subject="x", text="x"), KEY, SETTINGS.smtp))
    to = _raw_header(parsed, "To")
    words = re.findall(r"=\?utf-8\?b\?[^?]*\?=", to)
    assert len(words) > 1 and all(len(w) <= 75 for w in words)
    assert str(make_header(decode_header(to))) == f"{name} <ana@example.com>"
    assert mailbox(parsed, "To").addr_spec == "ana@example.com"


def _raw_header(message: EmailMessage, name: str) -> str:
    """The header's value as it was on the wire, encoded-words and folds included."""
    [value] = [v for k, v in message.raw_items() if k == name]
    return str(value)


@pytest.mark.parametrize(("html", "attachments", "structure"), [
    (None, (), ["text/plain"]),
    ("<p>Hé</p>", (), ["multipart/alternative", "text/plain", "text/html"]),
    (None, (INVITE,), ["multipart/mixed", "text/plain", "text/calendar"]),
    ("<p>Hé</p>", (INVITE, BINARY),
     ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/calendar",
      "application/octet-stream"]),
])
def test_bodies_and_attachments_decode_to_the_original_content(
        html: str | None, attachments: tuple[Attachment, ...], structure: list[str]) -> None:
    """The compat32 structure: base64 utf-8 text, HTML as its alternative, attachments beside them
    in multipart/mixed with their type parameters and filename; every byte comes back."""
    text = "Hi Zoë,\n\n. a line starting with a dot\r\nwindows line\n日本語 🎉\n" + "long line " * 40 + "\n"
    raw = build_message(Email(to="ana@example.com", subject="x", text=text, html=html, attachments=attachments),
                        KEY, SETTINGS.smtp)
    assert_wire_shape(raw)
    parsed = parse(raw)
    assert [part.get_content_type() for part in parsed.walk()] == structure
    assert all(not part.defects for part in parsed.walk())
    plain = parsed.get_body(("plain",))
    assert plain is not None and plain.get_content() == text and plain["Content-Transfer-Encoding"] == "base64"
    assert plain.get_content_charset() == "utf-8"
    html_part = parsed.get_body(("html",))
    assert (html_part.get_content() if html_part is not None else None) == html
    sent = list(parsed.iter_attachments())
    assert [(a.get_filename(), a.get_payload(decode=True)) for a in sent] == [
        (a.filename, a.content) for a in attachments]
    assert all(a.get_content_disposition() == "attachment" for a in sent)
    if attachments:
        assert sent[0].get_param("method") == "REQUEST"
    if len(attachments) > 1:
        assert (sent[1].get_param("x-kind"), sent[1].get_param("name")) == ("raw", "blob.bin")


def test_an_empty_text_body_is_still_a_well_formed_part() -> None:
    """No text at all: an empty base64 part, and the HTML part after it still parses."""
    empty = Email(to="ana@example.com", subject="x", text="", html="<b>x</b>")
    parsed = parse(build_message(empty, KEY, SETTINGS.smtp))
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and html is not None
    assert (plain.get_content(), html.get_content()) == ("", "<b>x</b>")
    assert all(not part.defects for part in parsed.walk())


def without_date_and_boundaries(raw: bytes) -> bytes:
    parsed = parse(raw)
    for part in parsed.walk():
        boundary = part.get_boundary()
        if boundary is not None:
            raw = raw.replace(boundary.encode(), b"BOUNDARY")
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: DATE\r\n", raw)


def test_the_same_email_built_twice_differs_only_in_date_and_boundaries() -> None:
    """A resend after a crash is the same message with the same Message-ID; only the Date and
    the random multipart boundaries change."""
    message = Email(to="ana@example.com", to_name="Zoë", subject="Réunion", text="hé", html="<p>hé</p>",
                    attachments=(INVITE,))
    first, again = build_message(message, KEY, SETTINGS.smtp), build_message(message, KEY, SETTINGS.smtp)
    assert without_date_and_boundaries(first) == without_date_and_boundaries(again)
    assert parse(first)["Message-ID"] == parse(again)["Message-ID"] == message_id(KEY, "reminders@example.com")
    other = build_message(message, "reminder:43:email:ana@example.com", SETTINGS.smtp)
    assert parse(other)["Message-ID"] != parse(first)["Message-ID"]


async def test_delivery_sends_the_built_bytes_and_returns_the_message_id(smtp_sink: SmtpSink) -> None:
    """Through a real SMTP server: the envelope comes from settings and the Email, the message
    arrives byte for byte as built (apart from Date and boundaries), and deliver() returns its Message-ID."""
    settings = Settings.load(smtp_sink.env())
    channel = SmtpChannel(settings.smtp)
    message = Email(to="ana@example.com", to_name="Zoë", subject="Réunion", text="hé\n.\n", html="<p>hé</p>",
                    attachments=(INVITE,))
    try:
        provider_id = await channel.deliver(message, KEY)
    finally:
        await channel.aclose()
    [received] = smtp_sink.raw
    sent = build_message(message, KEY, settings.smtp)
    assert without_date_and_boundaries(received) == without_date_and_boundaries(sent)
    assert provider_id == parse(received)["Message-ID"] == message_id(KEY, settings.smtp.from_email)
