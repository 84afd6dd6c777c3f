"""The email message written as bytes: headers, text and HTML parts, attachments.

It is written directly rather than built from `email` objects and flattened by a Generator:
that was a quarter of the CPU of sending a reminder. Its shape is the one compat32 produced:
base64 text/plain (and text/html in multipart/alternative), attachments in multipart/mixed,
CRLF line endings, lines within 78 columns (only a long Message-ID or a long non-ASCII
attachment filename passes them, as before). Addresses come checked from
app/providers/mailbox.py; a message whose envelope needs SMTPUTF8 carries them in UTF-8.
"""

from __future__ import annotations

import hashlib
import random
from binascii import b2a_base64
from email.utils import formatdate
from urllib.parse import quote

from app.config.services import SmtpSettings
from app.providers.mailbox import BadAddress, Envelope, envelope, sender_mailbox
from app.providers.messages import Attachment, Email

_LINE = 78
"""RFC 5322's recommended line length; headers are folded to stay within it."""
_BASE64_LINE = 76
_SPECIALS = frozenset('()<>[]:;@\\,."')
"""RFC 5322 specials: a display name holding one is quoted (email.utils' specialsre)."""
_WORD_BYTES = 42
"""UTF-8 bytes per RFC 2047 encoded-word: 56 base64 characters, 68 with "=?utf-8?b?...?=", so
even a first word after "Subject: " stays within 78 columns (and under RFC 2047's 75)."""


def build_message(message: Email, key: str, settings: SmtpSettings) -> bytes:
    """The message as sent for idempotency key `key`: plain text, optional HTML alternative, attachments."""
    env = envelope(settings.from_email, message.to)
    return write_message(message, message_id(key, settings.from_email), settings, env)


def write_message(message: Email, msg_id: str, settings: SmtpSettings, env: Envelope) -> bytes:
    """The message for an envelope already checked (`build_message` checks it)."""
    body = _text_part(message.text, "plain")
    if message.html:
        body = _multipart("alternative", [body, _text_part(message.html, "html")])
    if message.attachments:
        body = _multipart("mixed", [body, *map(_attachment, message.attachments)])
    utf8 = env.smtputf8
    head = (f"From: {_mailbox(settings.from_name, env.sender.in_header(utf8=utf8), 'From: ')}\r\n"
            f"To: {_mailbox(message.to_name, env.recipient.in_header(utf8=utf8), 'To: ')}\r\n"
            f"Subject: {_unstructured(message.subject, 'Subject: ')}\r\n"
            f"Date: {formatdate(localtime=False)}\r\n"
            # Never folded: a parser keeps the fold's space in the value, and the line would stay
            # over 78 columns anyway once the key is long.
            f"Message-ID: {msg_id}\r\n"
            "MIME-Version: 1.0\r\n")
    # Only the addresses are written raw, and UTF-8 only in a message sent with SMTPUTF8.
    return head.encode("utf-8" if utf8 else "ascii") + body


def message_id(key: str, from_email: str) -> str:
    """Derived from the idempotency key alone: a resend after an in-doubt crash carries the same
    Message-ID, so mail clients fold the two into one."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-.") else "." for c in key)[:80]
    try:
        domain = sender_mailbox(from_email).domain  # A-labels: the Message-ID stays ASCII in any message
    except BadAddress:
        domain = "workhorse"  # never sent: the envelope refuses such a sender first
    return f"<{safe}.{digest}@{domain}>"


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
    """`Name <address>`: quoted as formataddr does when the name is plain ASCII, else RFC 2047
    encoded-words. The address is written as given (UTF-8 in a message sent with SMTPUTF8).

    Whitespace in a name, line breaks included, becomes single spaces: readers collapse it anyway,
    and Python's parser refuses a display name holding CR or LF. A long name takes several
    encoded-words; readers join adjacent ones (RFC 2047 6.2), though Python's address parser
    before gh-128110 puts a space between them."""
    name = " ".join(name.split()) if name else ""
    if not name:
        return address
    if _verbatim(name):
        folded = _fold_at_spaces(f"{_display_name(name)} <{address}>", len(label))
        if folded is not None:
            return folded
    words = _encoded_words(name)
    width = len(words.rpartition("\n")[2]) + (0 if "\n" in words else len(label))
    fold = "" if width + len(address) + 3 <= _LINE else "\r\n"
    return f"{words}{fold} <{address}>"


def _display_name(name: str) -> str:
    """An ASCII name as formataddr writes it (which refuses a non-ASCII address beside it):
    quoted when it holds a special, with backslash and quote escaped."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"' if any(c in _SPECIALS for c in name) else escaped


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
