"""The rules for single setting values (host, port, encryption, e-mail address, ...).

Applied by :mod:`diagnostics.model.validate` to every value of the account model, whether it
comes from the account file or from ``maildiag smtp``'s options. A rule returns the
normalised value or raises :class:`FieldProblem` with what was expected and what was found.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
PLATFORM_ACCOUNT = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENCRYPTION_ALIASES = {"ssl": "tls", "implicit": "tls", "tls/starttls": "starttls"}


class FieldProblem(Exception):
    """A value breaks its rule: ``expected`` says what would do, ``found`` is the value."""

    def __init__(self, expected: str, found: Any) -> None:
        super().__init__(f"expected {expected}")
        self.expected = expected
        self.found = found


def host(value: Any) -> str:
    """An IP address (normalised) or a host name (lower case, without the trailing dot)."""
    if not isinstance(value, str) or not value:
        raise FieldProblem("a host name like smtp.company.example", value)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    name = value
    if not value.isascii():
        # An internationalised name (mail.bücher.example) is used by its A-label, as mail
        # clients and DNS do (IDNA 2008 with UTS 46 mapping, as email-validator does).
        import idna

        try:
            name = idna.encode(value.rstrip("."), uts46=True).decode("ascii")
        except idna.IDNAError:
            name = value
    if not HOSTNAME.match(name):
        raise FieldProblem(
            "a host name like smtp.company.example (letters, digits, - and .)", value
        )
    return name.rstrip(".").lower()


def port(value: Any) -> int:
    """A TCP port number."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise FieldProblem("a port number from 1 to 65535 (usually 587, 465 or 25)", value)
    return value


def encryption(value: Any) -> str:
    """``starttls``, ``tls`` or ``none``; also the names other tools use (SSL, implicit)."""
    text = str(value).strip().lower() if isinstance(value, str) else value
    text = _ENCRYPTION_ALIASES.get(text, text) if isinstance(text, str) else text
    if text not in ("starttls", "tls", "none"):
        raise FieldProblem("one of starttls, tls (implicit TLS, 'SSL'), none", value)
    return str(text)


def email(value: Any) -> str:
    """An e-mail address, normalised by email-validator (no deliverability check).

    An address on a special-use domain (``jobs@acme.test``, ``svc@corp.local``) is well formed:
    staging servers live there. Whether candidates' mail can reach it is a finding
    (:func:`special_use_domain`), not a reason to refuse the whole file.
    """
    if not isinstance(value, str):
        raise FieldProblem("an e-mail address (text)", value)
    if _CONTROL.search(value):
        raise FieldProblem("an e-mail address without control characters (CR, LF, TAB, ...)", value)
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        special = special_use_domain(value)
        if special is None:
            raise FieldProblem(
                f"an e-mail address like jobs@company.example ({exc})", value
            ) from None
    # email-validator refuses every special-use name and has no switch for it: the address is
    # checked with a public stand-in for that name, which is then put back.
    stand_in = value[: len(value) - len(special)] + _STAND_IN
    try:
        normalized = validate_email(stand_in, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise FieldProblem(f"an e-mail address like jobs@company.example ({exc})", value) from None
    return normalized[: len(normalized) - len(_STAND_IN)] + special


_STAND_IN = "example"


def special_use_domain(address: str) -> str | None:
    """The special-use name (``test``, ``local``, ``invalid``, ``localhost``, ``onion``, ``arpa``)
    that the domain of ``address`` ends in, as email-validator lists them; None for a
    domain the internet's mail can reach."""
    domain = address.rpartition("@")[2].lower()
    for name in SPECIAL_USE_DOMAIN_NAMES:
        if domain.endswith("." + name):
            return name
    return None


def login(value: Any) -> str:
    """An SMTP login: whatever the server accepts (an address, ``svc``, ``CORP\\jobs``), as
    long as it is text without control characters, which no SMTP command line can carry."""
    if not isinstance(value, str) or not value:
        raise FieldProblem("a login like jobs@company.example (non-empty text)", value)
    if _CONTROL.search(value):
        raise FieldProblem("a login without control characters (CR, LF, TAB, ...)", value)
    return value


def envelope_address(address: str) -> str:
    """``address`` as an SMTP envelope carries it without SMTPUTF8 (RFC 5321): an
    internationalised domain in its A-label form (``jobs@xn--bcher-kva.example`` for
    ``jobs@bücher.example``), as every MTA sends it. A non-ASCII local part has no such form and
    is returned as it is: only a server that offers SMTPUTF8 (RFC 6531) can take it.
    """
    if address.isascii():
        return address
    try:
        ascii_form = validate_email(address, check_deliverability=False).ascii_email
    except EmailNotValidError:
        return address
    return ascii_form or address


def same_address(one: str, other: str) -> bool:
    """The two name one mailbox: compared as the envelope carries them (an internationalised
    domain by its A-label, written either way) and without regard to case."""
    return envelope_address(one).casefold() == envelope_address(other).casefold()


def platform_account(value: str) -> str:
    """The platform account's name."""
    if not PLATFORM_ACCOUNT.match(value):
        raise FieldProblem("the platform account name: lower-case letters, digits and -", value)
    return value


def profile_name(value: str, known: Iterable[str]) -> str:
    """One of the ``known`` platform profiles."""
    names = sorted(known)
    if value not in names:
        raise FieldProblem(f"one of the built-in profiles: {', '.join(names)}", value)
    return value


def found_text(value: Any, loc: tuple[str | int, ...]) -> str:
    """How a problem shows the value it found: never a password, a mapping as such, short."""
    if any(part in ("password", "password_file") for part in loc if isinstance(part, str)):
        return "(not shown)"
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_IMAP_ENCRYPTIONS = ("tls", "starttls")
_SELECTOR = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def imap_encryption(value: Any) -> str:
    """``tls`` or ``starttls`` (and the names other tools use); never plain text: LOGIN in
    the clear puts the password on the wire, and servers refuse it (RFC 3501 6.2.3)."""
    text = encryption(value)
    if text not in _IMAP_ENCRYPTIONS:
        raise FieldProblem("tls (IMAPS, port 993) or starttls (port 143)", value)
    return text


def imap_port(value: Any) -> int:
    """A TCP port number, named as IMAP's in the message."""
    try:
        return port(value)
    except FieldProblem:
        raise FieldProblem("a port number from 1 to 65535 (IMAP: 993 or 143)", value) from None


def dkim_selector(value: Any) -> str:
    """A DKIM selector: a DNS name (``s1``, ``mail2026``, ``sel.sub``)."""
    if not isinstance(value, str) or not _SELECTOR.match(value):
        raise FieldProblem("a DKIM selector like s1 or mail2026 (a DNS name)", value)
    return value.lower()


def command(value: Any) -> tuple[str, ...]:
    """A command as an argument list: a list of strings, or one string split as a shell
    would split it (no shell runs it)."""
    import shlex

    if isinstance(value, str):
        try:
            argv = tuple(shlex.split(value))
        except ValueError as exc:
            raise FieldProblem(f"a command line ({exc})", value) from None
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        argv = tuple(value)
    else:
        raise FieldProblem("a command (text, or a list of arguments)", value)
    if not argv or not argv[0]:
        raise FieldProblem("a command that prints an OAuth2 access token", value)
    return argv


def networks(value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A list of IP networks in CIDR notation, host bits clear."""
    if not isinstance(value, list):
        raise FieldProblem("a list of IP networks like [3.121.59.239/32]", value)
    found = []
    for item in value:
        try:
            found.append(ipaddress.ip_network(str(item), strict=True))
        except ValueError as exc:
            raise FieldProblem(
                f"IP networks in CIDR notation like 3.121.59.239/32 ({exc})", item
            ) from None
    return tuple(found)
