"""Email over SMTP (aiosmtplib): MIME building and a small pool of reused connections.

Reusing a connection across a batch saves the TCP, TLS and AUTH round trips that otherwise
dominate the cost of a short message; a connection that failed is dropped, never reused.
"""

from __future__ import annotations

import asyncio
import hashlib
from email import encoders
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate

import aiosmtplib

from app.errors import PermanentError, TransientError
from app.providers.messages import Attachment, Email
from app.settings import Settings


def build_mime(message: Email, key: str, settings: Settings) -> Message:
    """The MIME message: plain text, optional HTML alternative, attachments.

    Built with the compat32 classes rather than EmailMessage: same wire format, a fraction of
    the CPU (the modern header registry dominated the cost of a reminder).
    """
    body: Message = MIMEText(message.text, "plain", "utf-8")
    if message.html:
        alternative = MIMEMultipart("alternative")
        alternative.attach(body)
        alternative.attach(MIMEText(message.html, "html", "utf-8"))
        body = alternative
    mime = body
    if message.attachments:
        mime = MIMEMultipart("mixed")
        mime.attach(body)
        for att in message.attachments:
            mime.attach(_attachment(att))
    mime["From"] = formataddr((settings.smtp_from_name, settings.smtp_from_email), charset="utf-8")
    mime["To"] = formataddr((message.to_name or "", message.to), charset="utf-8")
    mime["Subject"] = Header(message.subject, "utf-8").encode()
    mime["Date"] = formatdate(localtime=False)
    mime["Message-ID"] = message_id(key, settings.smtp_from_email)
    return mime


def message_id(key: str, from_email: str) -> str:
    """Derived from the idempotency key alone: a resend after an in-doubt crash carries the same
    Message-ID, so mail clients fold the two into one."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    safe = "".join(c if c.isalnum() or c in "-." else "." for c in key)[:80]
    return f"<{safe}.{digest}@{from_email.rpartition('@')[2] or 'workhorse'}>"


def _attachment(att: Attachment) -> Message:
    maintype, _, rest = att.mime_type.partition("/")
    subtype, _, raw_params = rest.partition(";")
    part = MIMEBase(maintype, subtype.strip())
    for name, value in _params(raw_params).items():
        part.set_param(name, value)
    part.set_payload(att.content)
    encoders.encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=att.filename)
    return part


def _params(raw: str) -> dict[str, str]:
    pairs = (p.split("=", 1) for p in raw.split(";") if "=" in p)
    return {k.strip(): v.strip() for k, v in pairs}


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
        mime = build_mime(message, key, self.settings)
        async with self._slots:
            smtp, reused = await self._checkout()
            try:
                await _send(smtp, mime, reused=reused)
            except _StaleConnection:
                # A pooled connection the server closed while idle (noticed at MAIL FROM, before
                # any message went out): one more try on a fresh connection.
                smtp = await self._connect()
                await _send(smtp, mime, reused=False)
            self._idle.append(smtp)
        return str(mime["Message-ID"])

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


async def _send(smtp: aiosmtplib.SMTP, mime: Message, *, reused: bool) -> None:
    """Send on `smtp`; on any failure the connection is closed, never returned to the pool."""
    try:
        await smtp.send_message(mime)
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
