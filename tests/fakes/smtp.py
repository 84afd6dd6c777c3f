"""A real SMTP server (aiosmtpd) on 127.0.0.1 in the test's event loop, keeping what it accepts.

Tests can take it down and bring it back on the same port (a provider outage), hold senders
at MAIL FROM (a send in progress, for crash tests) until released, offer SMTPUTF8 or not, and
refuse chosen recipients at RCPT TO.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        self.sink.mail_commands += 1
        if not self.sink.gate.is_set():
            self.sink.held += 1
            self.sink.changed.set()
            await self.sink.gate.wait()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        refusal = self.sink.refuse.get(address)
        if refusal is not None:
            self.sink.refused.append(address)
            self.sink.changed.set()
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes) and isinstance(envelope.mail_from, str)
        self.sink.raw.append(envelope.content)
        self.sink.envelopes.append(Received(envelope.mail_from, list(envelope.rcpt_tos), list(envelope.mail_options)))
        self.sink.changed.set()
        return "250 Message accepted"


@dataclass(frozen=True, slots=True)
class Received:
    """The envelope of an accepted message, as the server read it."""

    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    """MAIL FROM parameters, upper-cased by aiosmtpd: "SMTPUTF8", "BODY=8BITMIME", "SIZE=…"."""


class SmtpSink:
    def __init__(self, *, smtputf8: bool = False, host: str = "127.0.0.1") -> None:
        self.smtputf8 = smtputf8
        self.host = host
        """The address it listens on (another host's workers reach it on the test's own address)."""
        """Offer SMTPUTF8 (RFC 6531) in the EHLO reply, and take UTF-8 addresses."""
        self.refuse: dict[str, str] = {}
        """Recipient → the reply refusing it at RCPT TO (e.g. "550 5.1.1 No such user")."""
        self.refused: list[str] = []
        """Recipients refused so far, in order."""
        self.raw: list[bytes] = []
        """Each accepted message as received; `messages` parses them on first use."""
        self.envelopes: list[Received] = []
        """Each accepted message's envelope, in the order of `raw`."""
        self._parsed: list[EmailMessage] = []
        self.port = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = 0
        """Sessions that reached MAIL FROM while the gate was closed."""
        self.connections = 0
        """Connections accepted so far."""
        self.mail_commands = 0
        """MAIL FROM commands received so far (each transaction begun)."""
        self.changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._protocols: list[SMTP] = []

    def env(self) -> dict[str, str]:
        """Settings that point a worker at this server."""
        return {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port), "SMTP_SECURE": "none",
                "SMTP_FROM_EMAIL": "reminders@workhorse.test", "SMTP_TIMEOUT_S": "5"}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            protocol = SMTP(_Handler(self), hostname="sink.test", loop=loop, enable_SMTPUTF8=self.smtputf8)
            self._protocols.append(protocol)
            self.connections += 1
            return protocol

        self._server = await loop.create_server(factory, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Down: refuse new connections and drop the open ones."""
        if self._server is not None:
            self._server.close()
            for protocol in self._protocols:
                if protocol.transport is not None:
                    protocol.transport.close()
            self._protocols.clear()
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, predicate: Any, timeout_s: float = 30.0) -> None:
        """Until predicate(self) holds, woken by each accepted message or held session."""
        async with asyncio.timeout(timeout_s):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()

    @property
    def messages(self) -> list[EmailMessage]:
        for content in self.raw[len(self._parsed):]:
            # UTF-8 headers (RFC 6532) parse from text: the bytes parser keeps them as surrogates.
            message = (email.message_from_bytes(content, policy=email.policy.default) if content.isascii()
                       else email.message_from_string(content.decode("utf-8"), policy=email.policy.default))
            assert isinstance(message, EmailMessage)
            self._parsed.append(message)
        return self._parsed

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]
