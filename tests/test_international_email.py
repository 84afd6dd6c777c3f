"""Email to non-ASCII addresses: IDNA domains over plain SMTP, non-ASCII local parts with
SMTPUTF8, and a clear refusal, at once and for that recipient alone, when they cannot go."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from app.providers.mailbox import BadAddress, mailbox
from app.providers.messages import Email
from app.providers.smtp import build_message
from app.runtime.resources import Resources
from app.settings import Settings
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
    raw = build_message(Email(to="ana@bücher.de", subject="x", text="y"), "reminder:5:email:ana@bücher.de", settings)
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
    MAIL FROM; the ASCII and IDNA addresses sent through the same worker arrive, and the SMTP
    breaker stays closed."""
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
    status, error = (await ledger(res))["δοκιμή@example.com"]
    assert status == "FAILED" and error is not None and why in error
    assert breaker_opened is None
