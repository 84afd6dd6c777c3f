"""Email to non-ASCII addresses: IDNA domains over plain SMTP, non-ASCII local parts with
SMTPUTF8, and a clear refusal, at once and for that recipient alone, when they cannot go."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from app.calendar.events import NewEvent, create_event
from app.config import Settings
from app.jobs.resources import Resources
from app.providers.mailbox import BadAddress, mailbox
from app.providers.messages import Email
from app.providers.mime import build_message
from tests.fakes.smtp import SmtpSink
from tests.support.jobs import result_of
from tests.support.worker import in_process_worker

QUEUE = "scheduling-reminders"
SENDER = "reminders@workhorse.test"


@pytest.mark.parametrize(("address", "envelope", "shown", "smtputf8"), [
    ("ana@example.com", "ana@example.com", "ana@example.com", False),
    ("jürgen@exämple.de", "jürgen@xn--exmple-cua.de", "jürgen@exämple.de", True),
    ("δοκιμή@example.com", "δοκιμή@example.com", "δοκιμή@example.com", True),
    ("ana@EXÄMPLE.DE", "ana@xn--exmple-cua.de", "ana@exämple.de", False),  # UTS #46 maps case
    ("ana@straße.de", "ana@xn--strae-oqa.de", "ana@straße.de", False),  # IDNA2008: not strasse.de
    ("ana@例え。テスト", "ana@xn--r8jz45g.xn--zckzah", "ana@例え.テスト", False),  # an ideographic full stop
    # Latin and Greek in one local part: the point of the case, not a confusable by mistake.
    ("jürgenδοκιμή@example.com", "jürgenδοκιμή@example.com", "jürgenδοκιμή@example.com", True),  # noqa: RUF001
    ("e\u0301@example.com", "\u00e9@example.com", "\u00e9@example.com", True),  # NFC
    ('"a b@c"@example.com', '"a b@c"@example.com', '"a b@c"@example.com', False),
    ("a" * 64 + "@example.com", "a" * 64 + "@example.com", "a" * 64 + "@example.com", False),
    ("ana@ex_ample.com", "ana@ex_ample.com", "ana@ex_ample.com", False),  # an ASCII domain as written
])
def test_a_domain_goes_out_in_a_labels_and_only_a_non_ascii_local_part_needs_smtputf8(
        address: str, envelope: str, shown: str, smtputf8: bool) -> None:
    """The envelope carries the domain's A-labels; a UTF-8 header shows it as written; only a
    local part outside ASCII needs the server's SMTPUTF8."""
    box = mailbox(address)
    assert (box.address, box.in_header(utf8=True), box.needs_smtputf8) == (envelope, shown, smtputf8)
    assert box.in_header(utf8=False) == envelope


@pytest.mark.parametrize(("address", "why"), [
    ("ana\x00@example.com", "control"),
    ("ana@example.com\r\nRCPT TO:<eve@example.com>", "control"),
    ("ana\r\n.\r\nMAIL FROM:<eve@example.com>@example.com", "control"),
    ("ana\u2028@example.com", "control"),  # a line separator
    ("an\u200da@example.com", "format"),  # a zero-width joiner: invisible
    ("ana\u00a0b@example.com", "space"),  # a no-break space
    ("a" * 65 + "@example.com", "longer than 64 octets"),
    ("ü" * 33 + "@example.com", "longer than 64 octets"),  # 33 characters, 66 octets
    ("ana@" + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 63, "longer than 254 octets"),
    ("ana@١٢٣.com", "not a valid internationalized name"),  # a digit-only RTL label breaks the bidi rule
    ("ana@" + "ä" * 64 + ".de", "not a valid internationalized name"),
    ("ana example.com", "no @"),
    ("@example.com", "local part is empty"),
    ("ana@", "domain is empty"),
    ("a..na@example.com", "neither a dot-atom nor a quoted string"),
    ("<ana>@example.com", "neither a dot-atom nor a quoted string"),
    ('"ana@example.com', "neither a dot-atom nor a quoted string"),
    ("ana@exa mple.com", "not a host name"),
])
def test_an_address_that_cannot_be_sent_is_refused_naming_it_and_why(address: str, why: str) -> None:
    """Refused before any connection, with the address shown by repr (a control character
    visible) and the reason."""
    with pytest.raises(BadAddress) as refused:
        mailbox(address)
    assert repr(address) in str(refused.value) and why in str(refused.value)


def test_an_ascii_local_part_at_a_unicode_domain_makes_a_plain_7bit_message() -> None:
    """From and To carry A-labels, and so does the Message-ID, though the key names the recipient
    as written (`reminder:5:email:ana@exämple.de`): the message stays ASCII, for any server."""
    settings = Settings.load({"SMTP_FROM_EMAIL": "erinnerung@exämple.de", "SMTP_FROM_NAME": "Termine"})
    key = "reminder:5:email:ana@bücher.de"
    raw = build_message(Email(to="ana@bücher.de", subject="x", text="y"), key, settings.smtp)
    assert raw.isascii()
    head = raw.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert b"From: Termine <erinnerung@xn--exmple-cua.de>" in head and b"To: ana@xn--bcher-kva.de" in head
    assert b"Message-ID: <reminder.5.email.ana.b.cher.de." in raw and b"@xn--exmple-cua.de>" in raw


@asynccontextmanager
async def serving(*, smtputf8: bool) -> AsyncIterator[SmtpSink]:
    sink = SmtpSink(smtputf8=smtputf8)
    await sink.start()
    try:
        yield sink
    finally:
        await sink.stop()


def email(key: str, to: str, to_name: str | None = None) -> dict[str, Any]:
    return {"idempotencyKey": key, "to": to, "toName": to_name, "subject": "Grüße", "text": "Hallo"}


async def ledger(res: Resources) -> dict[str, tuple[str, str | None]]:
    rows = await res.db.fetch("SELECT recipient, status, error FROM notifications WHERE channel = 'email'")
    return {r["recipient"]: (r["status"], r["error"]) for r in rows}


async def test_non_ascii_recipients_are_delivered_with_smtputf8_when_the_server_offers_it(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """Against an aiosmtpd offering SMTPUTF8: the two non-ASCII local parts go out with SMTPUTF8
    and BODY=8BITMIME, their To headers in UTF-8 as written; an ASCII local part at a non-ASCII
    domain goes out as plain ASCII with the domain's A-labels; the ledger records each SENT."""
    to = {"jürgen": ("jürgen@exämple.de", "Jürgen Groß"), "greek": ("δοκιμή@example.com", None),
          "idn": ("ana@exämple.de", "Ana"), "ascii": ("bob@example.com", None)}
    async with serving(smtputf8=True) as sink, in_process_worker(make_settings(**sink.env()), [QUEUE]):
        results = {key: await result_of(res, await res.enqueuer.enqueue("send_email", email(key, *to[key])), QUEUE)
                   for key in to}
    assert {key: r["status"] for key, r in results.items()} == dict.fromkeys(to, "sent")
    received = dict(zip((e.rcpt_tos[0] for e in sink.envelopes), zip(sink.envelopes, sink.raw, sink.messages,
                                                                      strict=True), strict=True))
    assert set(received) == {"jürgen@xn--exmple-cua.de", "δοκιμή@example.com", "ana@xn--exmple-cua.de",
                             "bob@example.com"}
    for rcpt, (envelope, raw, message) in received.items():
        utf8 = not rcpt.isascii()
        assert ("SMTPUTF8" in envelope.mail_options, "BODY=8BITMIME" in envelope.mail_options) == (utf8, utf8)
        assert raw.isascii() is not utf8
        assert envelope.mail_from == SENDER and message["From"] == f"Workhorse <{SENDER}>"
    assert received["jürgen@xn--exmple-cua.de"][2]["To"] == "Jürgen Groß <jürgen@exämple.de>"
    assert received["δοκιμή@example.com"][2]["To"] == "δοκιμή@example.com"
    assert received["ana@xn--exmple-cua.de"][2]["To"] == "Ana <ana@xn--exmple-cua.de>"
    assert await ledger(res) == {address: ("SENT", None) for address, _ in to.values()}


async def test_without_smtputf8_a_non_ascii_local_part_fails_at_once_for_that_recipient_alone(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """Against a server without SMTPUTF8: the email to δοκιμή@example.com is dead-lettered on its
    first attempt, naming the recipient and why, recorded FAILED in the ledger, and never reaches
    MAIL FROM; the ASCII and IDNA addresses sent next arrive over the same connection, and the
    SMTP breaker stays closed."""
    async with serving(smtputf8=False) as sink, in_process_worker(make_settings(**sink.env()), [QUEUE]) as process:
        refused = await res.enqueuer.enqueue("send_email", email("greek", "δοκιμή@example.com"), job_id="greek")
        assert refused is not None
        outcome = await res.enqueuer.job(refused.job_id, QUEUE).wait(timeout_s=20, poll_delay=0.02)
        sent = [await result_of(res, await res.enqueuer.enqueue("send_email", email(key, to)), QUEUE)
                for key, to in (("idn", "ana@exämple.de"), ("ascii", "bob@example.com"))]
        breaker_opened = process.res.breakers["smtp"].opened_at
    assert not outcome.success and [r["status"] for r in sent] == ["sent", "sent"]
    [dead] = await res.dlq.list()
    why = "'δοκιμή@example.com': its local part is not ASCII and the SMTP server does not offer SMTPUTF8"
    assert dead.job_id == "greek" and dead.attempts == 1 and why in dead.error_message
    assert [e.rcpt_tos for e in sink.envelopes] == [["ana@xn--exmple-cua.de"], ["bob@example.com"]]
    assert (sink.mail_commands, sink.connections) == (2, 1)
    status, error = (await ledger(res))["δοκιμή@example.com"]
    assert status == "FAILED" and error is not None and why in error
    assert breaker_opened is None


async def due_reminder(res: Resources, event_id: str, *emails: str) -> int:
    """The id of an event's 2 h reminder, due now, with one participant per email."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=90)
    event = NewEvent(id=event_id, org_id="org-1", title="Besprechung", start_at=start,
                     end_at=start + dt.timedelta(hours=1), participants=[{"email": e} for e in emails])
    return (await create_event(res.db, event, now=start - dt.timedelta(hours=3)))["2h"]


async def reminder_rows(res: Resources, ids: dict[str, int]) -> dict[str, tuple[str, str | None]]:
    rows = {r["id"]: (r["status"], r["error"]) for r in await res.db.fetch(
        "SELECT id, status, error FROM event_reminders WHERE id = ANY($1::bigint[])", list(ids.values()))}
    return {name: rows[id_] for name, id_ in ids.items()}


async def test_a_reminder_batch_delivers_non_ascii_recipients_and_fails_only_the_refused_one(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """One batch against a server offering SMTPUTF8: reminders to jürgen@exämple.de and
    δοκιμή@example.com arrive; a recipient the server refuses (550 at RCPT) fails its reminder at
    once with that reply, without a retry or a dead letter; a reminder whose other participant
    was reached is SENT, the refusal recorded in the ledger beside that address."""
    ids = {"jürgen": await due_reminder(res, "ev-j", "jürgen@exämple.de"),
           "greek": await due_reminder(res, "ev-g", "δοκιμή@example.com"),
           "gone": await due_reminder(res, "ev-x", "gone@example.com"),
           "pair": await due_reminder(res, "ev-p", "ana@example.com", "left@example.com")}
    async with serving(smtputf8=True) as sink:
        sink.refuse = {"gone@example.com": "550 5.1.1 No such user", "left@example.com": "550 5.1.1 Left the company"}
        async with in_process_worker(make_settings(**sink.env()), [QUEUE]):
            batch = await result_of(res, await res.enqueuer.enqueue(
                "send_reminders", {"reminderIds": list(ids.values())}, job_id="batch"), QUEUE)
    assert batch == {"reminders": {"sent": 3, "failed": 1},
                     "messages": {"sent": 3, "duplicate": 0, "skipped": 0, "failed": 1}}
    assert sorted(str(m["To"]) for m in sink.messages) == ["ana@example.com", "jürgen@exämple.de", "δοκιμή@example.com"]
    rows = await reminder_rows(res, ids)
    assert {name: status for name, (status, _) in rows.items()} == {
        "jürgen": "SENT", "greek": "SENT", "gone": "FAILED", "pair": "SENT"}
    assert rows["gone"][1] == "PermanentError: SMTP recipients refused: 'gone@example.com': 550 5.1.1 No such user"
    assert rows["pair"][1] is None
    left = (await ledger(res))["left@example.com"]
    assert left == ("FAILED", "PermanentError: SMTP recipients refused: 'left@example.com': 550 5.1.1 Left the company")
    assert await res.dlq.list() == []


async def test_each_reminder_of_a_failed_batch_records_its_own_reason(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """Against a server without SMTPUTF8, one attempt allowed: jürgen@exämple.de fails at once for
    want of SMTPUTF8, a participant with CR/LF in the address fails at once as unsendable, two
    recipients deferred with different 4xx replies fail the batch, and ana@exämple.de arrives.
    Once the batch is dead-lettered each unsent reminder holds its own reason, not the first's."""
    ids = {"jürgen": await due_reminder(res, "ev-j", "jürgen@exämple.de"),
           "crlf": await due_reminder(res, "ev-c", "eve@example.com\r\nRCPT TO:<mallory@example.com>"),
           "busy": await due_reminder(res, "ev-b", "busy@example.com"),
           "later": await due_reminder(res, "ev-l", "later@example.com"),
           "idn": await due_reminder(res, "ev-i", "ana@exämple.de")}
    async with serving(smtputf8=False) as sink:
        sink.refuse = {"busy@example.com": "450 4.2.1 Mailbox busy", "later@example.com": "451 4.3.0 Try again later"}
        async with in_process_worker(make_settings(**sink.env(), scheduling_reminders_attempts=1), [QUEUE]):
            await res.enqueuer.enqueue("send_reminders", {"reminderIds": list(ids.values())}, job_id="batch")
            outcome = await res.enqueuer.job("batch", QUEUE).wait(timeout_s=20, poll_delay=0.02)
    assert not outcome.success
    rows = await reminder_rows(res, ids)
    assert {name: status for name, (status, _) in rows.items()} == {
        "jürgen": "FAILED", "crlf": "FAILED", "busy": "FAILED", "later": "FAILED", "idn": "SENT"}
    assert rows["jürgen"][1] == ("BadAddress: cannot send to 'jürgen@exämple.de': its local part is not ASCII"
                                 " and the SMTP server does not offer SMTPUTF8")
    assert rows["crlf"][1] == ("BadAddress: cannot send to 'eve@example.com\\r\\nRCPT TO:<mallory@example.com>':"
                               " its local part holds a control, format or space character")
    deferred = "TransientError: SMTP recipients deferred:"
    assert rows["busy"][1] == f"{deferred} 'busy@example.com': 450 4.2.1 Mailbox busy"
    assert rows["later"][1] == f"{deferred} 'later@example.com': 451 4.3.0 Try again later"
    assert [e.rcpt_tos for e in sink.envelopes] == [["ana@xn--exmple-cua.de"]]
    assert sorted(sink.refused) == ["busy@example.com", "later@example.com"]
    [dead] = await res.dlq.list()
    assert dead.job_id == "batch" and dead.attempts == 1
