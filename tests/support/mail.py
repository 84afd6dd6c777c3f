"""Messages as a mail client reads them: the bytes we build or send, parsed by the email package."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage


def parse(raw: bytes) -> EmailMessage:
    """The message as a mail client's parser reads it."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed
