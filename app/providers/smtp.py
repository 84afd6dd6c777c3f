"""Email over SMTP (aiosmtplib): a small pool of reused connections, and the server's answers
in our error tree. The message itself is written by app/providers/mime.py.

Addresses go through app/providers/mailbox.py: domains as IDNA A-labels, and a non-ASCII local
part sent with SMTPUTF8 (the headers then carry UTF-8, RFC 6532), or refused for that
recipient alone, before MAIL FROM, when the server does not offer it.

Reusing a connection across a batch saves the TCP, TLS and AUTH round trips that otherwise
dominate the cost of a short message; a connection that failed is dropped, never reused.
"""

from __future__ import annotations

import asyncio

import aiosmtplib

from app.config.services import SmtpSettings
from app.errors import PermanentError, TransientError
from app.providers.mailbox import BadAddress, Envelope, envelope
from app.providers.messages import Email
from app.providers.mime import message_id, write_message


class SmtpChannel:
    name = "email"
    provider = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(settings.pool_size)

    def unconfigured_reason(self) -> str | None:
        return None if self.settings.host else "email is not configured (SMTP_HOST is unset)"

    async def deliver(self, message: Email, key: str) -> str:
        env = envelope(self.settings.from_email, message.to)  # a bad address: refused here
        msg_id = message_id(key, self.settings.from_email)
        raw = write_message(message, msg_id, self.settings, env)
        async with self._slots:
            smtp, reused = await self._checkout()
            try:
                try:
                    await _send(smtp, env, raw, reused=reused)
                except _StaleConnection:
                    # A pooled connection the server closed while idle (noticed at MAIL FROM,
                    # before any message went out): one more try on a fresh connection.
                    smtp = await self._connect()
                    await _send(smtp, env, raw, reused=False)
            finally:
                if smtp.is_connected:  # sent, or refused before MAIL FROM (_send closes it otherwise)
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
            hostname=s.host, port=s.port, timeout=s.timeout_s,
            use_tls=s.secure == "tls", start_tls=s.secure == "starttls",
            username=s.user, password=s.password.get_secret_value() if s.password else None,
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


async def _send(smtp: aiosmtplib.SMTP, env: Envelope, raw: bytes, *, reused: bool) -> None:
    """Send on `smtp`; on a failure the connection is closed, never returned to the pool, unless
    nothing was said: a server without SMTPUTF8 is found out after EHLO, before MAIL FROM.

    The body is 7-bit (base64). With SMTPUTF8 the envelope and headers are UTF-8, so the message
    is declared BODY=8BITMIME too, as smtplib's send_message does (RFC 6531 has a server that
    offers SMTPUTF8 offer 8BITMIME)."""
    options = ["SMTPUTF8", "BODY=8BITMIME"] if env.smtputf8 else None
    try:
        await smtp.sendmail(env.sender.address, [env.recipient.address], raw, mail_options=options)
    except aiosmtplib.SMTPNotSupported as exc:
        raise _without_smtputf8(env) from exc
    except BaseException as exc:
        smtp.close()
        if reused and isinstance(exc, aiosmtplib.SMTPServerDisconnected):
            raise _StaleConnection from exc
        if isinstance(exc, aiosmtplib.SMTPException):
            raise _translate(exc) from exc
        raise


def _without_smtputf8(env: Envelope) -> PermanentError:
    """Only for the message's own addresses: the same server takes ASCII ones."""
    why = "its local part is not ASCII and the SMTP server does not offer SMTPUTF8"
    if env.recipient.needs_smtputf8:
        return BadAddress(env.recipient.in_header(utf8=True), why)
    return PermanentError(f"SMTP_FROM_EMAIL {env.sender.in_header(utf8=True)!r} cannot be sent from: {why}")


def _translate(exc: BaseException) -> Exception:
    """SMTP failures in our error tree: 4xx and lost connections pass, 5xx do not."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        replies = "; ".join(f"{r.recipient!r}: {r.code} {r.message}" for r in exc.recipients)
        if all(400 <= r.code < 500 for r in exc.recipients):
            return TransientError(f"SMTP recipients deferred: {replies}")
        return PermanentError(f"SMTP recipients refused: {replies}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return PermanentError(f"SMTP authentication failed ({exc.code}); check SMTP_USER/SMTP_PASSWORD")
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 500:
        return PermanentError(f"SMTP server refused the message: {exc.code} {exc.message}")
    return TransientError(f"SMTP unavailable: {exc}")
