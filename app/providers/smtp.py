"""Email over SMTP (aiosmtplib): the message written as bytes, and a small pool of reused connections.

The message is written directly rather than built from `email` objects and flattened by a
Generator: that was a quarter of the CPU of sending a reminder. Its shape is the one compat32
produced: base64 text/plain (and text/html in multipart/alternative), attachments in
multipart/mixed, CRLF line endings, lines within 78 columns (only a long Message-ID or a long
non-ASCII attachment filename passes them, as before).

Reusing a connection across a batch saves the TCP, TLS and AUTH round trips that otherwise
dominate the cost of a short message; a connection that failed is dropped, never reused.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from binascii import b2a_base64
from email.utils import formataddr, formatdate
from urllib.parse import quote

import aiosmtplib

from app.errors import PermanentError, TransientError
from app.providers.messages import Attachment, Email
from app.settings import Settings

_LINE = 78
"""RFC 5322's recommended line length; headers are folded to stay within it."""
_BASE64_LINE = 76
_WORD_BYTES = 42
"""UTF-8 bytes per RFC 2047 encoded-word: 56 base64 characters, 68 with "=?utf-8?b?...?=", so
even a first word after "Subject: " stays within 78 columns (and under RFC 2047's 75)."""


def build_message(message: Email, key: str, settings: Settings) -> bytes:
    """The message as sent for idempotency key `key`: plain text, optional HTML alternative, attachments."""
    return _write(message, message_id(key, settings.smtp_from_email), settings)


def _write(message: Email, msg_id: str, settings: Settings) -> bytes:
    body = _text_part(message.text, "plain")
    if message.html:
        body = _multipart("alternative", [body, _text_part(message.html, "html")])
    if message.attachments:
        body = _multipart("mixed", [body, *map(_attachment, message.attachments)])
    head = (f"From: {_mailbox(settings.smtp_from_name, settings.smtp_from_email, 'From: ')}\r\n"
            f"To: {_mailbox(message.to_name, message.to, 'To: ')}\r\n"
            f"Subject: {_unstructured(message.subject, 'Subject: ')}\r\n"
            f"Date: {formatdate(localtime=False)}\r\n"
            # Never folded: a parser keeps the fold's space in the value, and the line would stay
            # over 78 columns anyway once the key is long.
            f"Message-ID: {msg_id}\r\n"
            "MIME-Version: 1.0\r\n")
    return head.encode("ascii") + body


def message_id(key: str, from_email: str) -> str:
    """Derived from the idempotency key alone: a resend after an in-doubt crash carries the same
    Message-ID, so mail clients fold the two into one."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    safe = "".join(c if c.isalnum() or c in "-." else "." for c in key)[:80]
    return f"<{safe}.{digest}@{from_email.rpartition('@')[2] or 'workhorse'}>"


def _text_part(text: str, subtype: str) -> bytes:
    # base64 for utf-8 text, as compat32 chose: line lengths and 8-bit transport never matter.
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    return head.encode("ascii") + _base64(text.encode())


def _attachment(att: Attachment) -> bytes:
    maintype, _, rest = att.mime_type.partition("/")
    subtype, _, raw_params = rest.partition(";")
    params = [f"{name}={_quoted(value)}" for name, value in _params(raw_params).items()]
    content_type = _with_params(f"Content-Type: {maintype}/{subtype.strip()}", params)
    disposition = _with_params("Content-Disposition: attachment", [_filename(att.filename)])
    head = f"{content_type}\r\nContent-Transfer-Encoding: base64\r\n{disposition}\r\n\r\n"
    return head.encode("ascii") + _base64(att.content)


def _params(raw: str) -> dict[str, str]:
    pairs = (p.split("=", 1) for p in raw.split(";") if "=" in p)
    return {k.strip(): v.strip() for k, v in pairs}


def _multipart(subtype: str, parts: list[bytes]) -> bytes:
    """Each part already ends in CRLF, which becomes the CRLF that opens the next delimiter."""
    # The boundary cannot occur in the content: base64 has no "-", every part header starts
    # with "Content-", and the random token keeps a nested boundary from being a prefix of its parent's.
    boundary = f"wh-{random.getrandbits(64):016x}-{subtype[:3]}".encode("ascii")
    head = b'Content-Type: multipart/' + subtype.encode("ascii") + b'; boundary="' + boundary + b'"\r\n\r\n'
    delimiter = b"--" + boundary + b"\r\n"
    return head + delimiter + delimiter.join(parts) + b"--" + boundary + b"--\r\n"


def _base64(data: bytes) -> bytes:
    """Lines of 76 characters, each ending in CRLF (one empty line for no data)."""
    encoded = b2a_base64(data, newline=False)
    lines = [encoded[i:i + _BASE64_LINE] for i in range(0, len(encoded), _BASE64_LINE)]
    return b"\r\n".join(lines) + b"\r\n"


def _mailbox(name: str | None, address: str, label: str) -> str:
    """`Name <address>`: quoted by formataddr when the name is plain ASCII, else RFC 2047 encoded-words.

    Whitespace in a name, line breaks included, becomes single spaces: readers collapse it anyway,
    and Python's parser refuses a display name holding CR or LF. A long name takes several
    encoded-words; readers join adjacent ones (RFC 2047 6.2), though Python's address parser
    before gh-128110 puts a space between them."""
    bare = formataddr(("", address))  # refuses a non-ASCII address, as it always has
    name = " ".join(name.split()) if name else ""
    if not name:
        return bare
    if _verbatim(name):
        folded = _fold_at_spaces(formataddr((name, address)), len(label))
        if folded is not None:
            return folded
    words = _encoded_words(name)
    width = len(words.rpartition("\n")[2]) + (0 if "\n" in words else len(label))
    fold = "" if width + len(bare) + 3 <= _LINE else "\r\n"
    return f"{words}{fold} <{bare}>"


def _unstructured(text: str, label: str) -> str:
    """A header value as is when it is plain ASCII (folded at spaces), else RFC 2047 encoded-words."""
    if _verbatim(text):
        folded = _fold_at_spaces(text, len(label))
        if folded is not None:
            return folded
    return _encoded_words(text)


def _verbatim(text: str) -> bool:
    """Printable ASCII that a reader parses back unchanged: single spaces only (leading, doubled or
    trailing ones could be lost in unfolding) and nothing that reads as an encoded-word."""
    return text.isascii() and text.isprintable() and " ".join(text.split()) == text and "=?" not in text


def _fold_at_spaces(text: str, taken: int) -> str | None:
    """`text` with CRLF inserted before spaces so no line passes 78 columns; None if a word is too long."""
    if taken + len(text) <= _LINE:
        return text
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        if line and taken + len(line) + 1 + len(word) > _LINE:
            lines.append(line)
            line, taken = word, 1  # a continuation line opens with the space folded before it
        else:
            line = f"{line} {word}" if line else word
        if taken + len(line) > _LINE:
            return None
    return "\r\n ".join([*lines, line])


def _encoded_words(text: str) -> str:
    """RFC 2047 base64 encoded-words, one per line, each holding whole UTF-8 characters."""
    raw = text.encode()
    words: list[str] = []
    start = 0
    while start < len(raw):
        end = min(start + _WORD_BYTES, len(raw))
        while end < len(raw) and raw[end] & 0xC0 == 0x80:  # a continuation byte: back up to its lead
            end -= 1
        words.append(f"=?utf-8?b?{b2a_base64(raw[start:end], newline=False).decode('ascii')}?=")
        start = end
    return "\r\n ".join(words)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _filename(name: str) -> str:
    """As a quoted string when plain ASCII, else RFC 2231 percent-encoded UTF-8 (as compat32 wrote it)."""
    if name.isascii() and name.isprintable():
        return f"filename={_quoted(name)}"
    return f"filename*=utf-8''{quote(name, safe='')}"


def _with_params(head: str, params: list[str]) -> str:
    """`head; a=1; b=2`, folded before a parameter that would pass 78 columns."""
    lines: list[str] = []
    line = head
    for param in params:
        if len(line) + 2 + len(param) > _LINE:
            lines.append(line + ";")
            line = " " + param
        else:
            line = f"{line}; {param}"
    return "\r\n".join([*lines, line])


class SmtpChannel:
    name = "email"
    provider = "smtp"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(settings.smtp_pool_size)

    def unconfigured_reason(self) -> str | None:
        return None if self.settings.smtp_host else "email is not configured (SMTP_HOST is unset)"

    async def deliver(self, message: Email, key: str) -> str:
        msg_id = message_id(key, self.settings.smtp_from_email)
        raw = _write(message, msg_id, self.settings)
        envelope = (self.settings.smtp_from_email, message.to)
        async with self._slots:
            smtp, reused = await self._checkout()
            try:
                await _send(smtp, envelope, raw, reused=reused)
            except _StaleConnection:
                # A pooled connection the server closed while idle (noticed at MAIL FROM, before
                # any message went out): one more try on a fresh connection.
                smtp = await self._connect()
                await _send(smtp, envelope, raw, reused=False)
            self._idle.append(smtp)
        return msg_id

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        """An idle connection that still looks open (reused=True), or a new one."""
        while self._idle:
            smtp = self._idle.pop()
            if smtp.is_connected:
                return smtp, True
        return await self._connect(), False

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host, port=s.smtp_port, timeout=s.smtp_timeout_s,
            use_tls=s.smtp_secure == "tls", start_tls=s.smtp_secure == "starttls",
            username=s.smtp_user, password=s.smtp_password.get_secret_value() if s.smtp_password else None,
        )
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _translate(exc) from exc
        return smtp

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for smtp in idle:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()


class _StaleConnection(Exception):
    """A reused connection turned out to be closed by the server."""


async def _send(smtp: aiosmtplib.SMTP, envelope: tuple[str, str], raw: bytes, *, reused: bool) -> None:
    """Send on `smtp`; on any failure the connection is closed, never returned to the pool.

    The envelope is what send_message read from the From and To headers; the message is 7-bit,
    so neither BODY=8BITMIME nor SMTPUTF8 is needed."""
    sender, recipient = envelope
    try:
        await smtp.sendmail(sender, [recipient], raw)
    except BaseException as exc:
        smtp.close()
        if reused and isinstance(exc, aiosmtplib.SMTPServerDisconnected):
            raise _StaleConnection from exc
        if isinstance(exc, aiosmtplib.SMTPException):
            raise _translate(exc) from exc
        raise


def _translate(exc: BaseException) -> Exception:
    """SMTP failures in our error tree: 4xx and lost connections pass, 5xx do not."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        if all(400 <= c < 500 for c in codes):
            return TransientError(f"SMTP recipients deferred: {exc}")
        return PermanentError(f"SMTP recipients refused: {exc}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return PermanentError(f"SMTP authentication failed ({exc.code}); check SMTP_USER/SMTP_PASSWORD")
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 500:
        return PermanentError(f"SMTP server refused the message: {exc.code} {exc.message}")
    return TransientError(f"SMTP unavailable: {exc}")
