"""Email addresses as SMTP carries them: checked, the domain in IDNA A-labels, and whether a
mailbox needs SMTPUTF8 (RFC 6531) because its local part is not ASCII.

A domain goes out as A-labels (`xn--…`) in the envelope and in the headers of an ASCII
message, so a non-ASCII domain with an ASCII local part needs nothing of the server. Only a
non-ASCII local part needs SMTPUTF8: the envelope and the headers then carry UTF-8 (RFC 6532)
and the domain is shown as the person wrote it (its U-labels).

IDNA2008 with the UTS #46 mapping comes from the `idna` package, not the stdlib codec: that
one implements IDNA2003, which maps "straße.de" to "strasse.de" (another domain) and refuses
scripts added to Unicode since 3.2.

An address that cannot be sent is a PermanentError naming it (by repr, so a control character
shows), raised before any connection is used: nothing else is affected.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import idna

from app.errors import PermanentError

# RFC 5321 4.5.3.1: a local part of at most 64 octets, a path of at most 256 with its brackets.
_LOCAL_OCTETS = 64
_ADDRESS_OCTETS = 254

# RFC 5321's atext and a quoted local part (qtextSMTP and quoted-pairSMTP), each widened by
# RFC 6531 to any non-ASCII character; which non-ASCII characters pass is `_printable`'s call.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_QUOTED = re.compile(r'"(?:[ !#-\[\]-~\x80-\U0010ffff]|\\[ -~])*"')
# An ASCII domain passes as written (it may hold A-labels, or an underscore that IDNA refuses
# but mail systems route): labels of letters, digits, "-" and "_", or an address literal.
_ASCII_DOMAIN = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[!-Z^-~]+\]")


@dataclass(frozen=True, slots=True)
class Mailbox:
    local: str
    """As written, in NFC (RFC 6532 3.1 asks senders to normalize)."""
    domain: str
    """ASCII: A-labels for a domain written in Unicode."""
    shown_domain: str
    """The domain as a UTF-8 header shows it: its U-labels (the same as `domain` when ASCII)."""

    @property
    def needs_smtputf8(self) -> bool:
        return not self.local.isascii()

    @property
    def address(self) -> str:
        """For the envelope (MAIL FROM, RCPT TO)."""
        return f"{self.local}@{self.domain}"

    def in_header(self, *, utf8: bool) -> str:
        return f"{self.local}@{self.shown_domain if utf8 else self.domain}"


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: Mailbox
    recipient: Mailbox

    @property
    def smtputf8(self) -> bool:
        """UTF-8 in the envelope and the headers: the server must offer SMTPUTF8."""
        return self.sender.needs_smtputf8 or self.recipient.needs_smtputf8


class BadAddress(PermanentError):
    """An address that cannot be sent to or from; the message names it and says why."""

    def __init__(self, address: str, why: str) -> None:
        super().__init__(f"cannot send to {address!r}: {why}")
        self.address, self.why = address, why


def envelope(sender: str, recipient: str) -> Envelope:
    try:
        from_ = sender_mailbox(sender)
    except BadAddress as exc:
        raise PermanentError(f"SMTP_FROM_EMAIL {sender!r} cannot be sent from: {exc.why}") from exc
    return Envelope(from_, mailbox(recipient))


@functools.lru_cache(maxsize=4)
def sender_mailbox(address: str) -> Mailbox:
    """`mailbox()` of SMTP_FROM_EMAIL, the same for every message: checked once, not twice per
    message (its envelope and its Message-ID)."""
    return mailbox(address)


def mailbox(address: str) -> Mailbox:
    """`address` checked and split; BadAddress saying what is wrong with it."""
    local, at, domain = address.rpartition("@")  # a quoted local part may hold "@", a domain never
    if not at:
        raise BadAddress(address, "it has no @")
    local = unicodedata.normalize("NFC", local)
    problem = _local_problem(local) or _domain_problem(domain) or _length_problem(local, domain)
    if problem:
        raise BadAddress(address, problem)
    if domain.isascii():
        if not _ASCII_DOMAIN.fullmatch(domain):
            raise BadAddress(address, "its domain is not a host name")
        return Mailbox(local, domain, domain)
    try:
        encoded = idna.encode(domain, uts46=True).decode("ascii")
        shown = idna.decode(encoded)
    except idna.IDNAError as exc:
        raise BadAddress(address, f"its domain is not a valid internationalized name ({exc})") from exc
    if len(f"{local}@{encoded}".encode()) > _ADDRESS_OCTETS:
        raise BadAddress(address, f"it is longer than {_ADDRESS_OCTETS} octets")
    return Mailbox(local, encoded, shown)


def _local_problem(local: str) -> str | None:
    if not local:
        return "its local part is empty"
    if not _printable(local):
        return "its local part holds a control, format or space character"
    if not (_DOT_ATOM.fullmatch(local) or _QUOTED.fullmatch(local)):
        return "its local part is neither a dot-atom nor a quoted string"
    return None


def _domain_problem(domain: str) -> str | None:
    if not domain:
        return "its domain is empty"
    if not _printable(domain):
        return "its domain holds a control, format or space character"
    return None


def _length_problem(local: str, domain: str) -> str | None:
    if len(local.encode()) > _LOCAL_OCTETS:
        return f"its local part is longer than {_LOCAL_OCTETS} octets"
    if len(f"{local}@{domain}".encode()) > _ADDRESS_OCTETS:
        return f"it is longer than {_ADDRESS_OCTETS} octets"
    return None


def _printable(text: str) -> bool:
    """No control characters (NUL, CR, LF …), separators other than the ASCII space (which only
    a quoted string may hold) or format characters (zero-width joiners, bidi overrides: invisible
    in a header, so a way to spoof one). Refusing the joiners turns away the rare address that
    needs one; we prefer that to a recipient no one can read."""
    return text.isprintable()
