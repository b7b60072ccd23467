"""Who each candidate mail comes from: the resolution rules and the From header, pure.

Rules (the platform's): a position belongs to a subcompany, or to the parent when it names
none. A (sub)company with a custom address and SMTP settings sends as that address through
its own server. One with a custom address but no SMTP settings sends from the platform's
inbound address (candidates see the platform's address). A subcompany with neither falls back
to the parent company's identity. The display name is the logged-in employee's name
(``sender_name: employee``) or the sending (sub)company's name (``sender_name: company``).
"""

from __future__ import annotations

import base64
import email.header
import email.headerregistry
import email.message
import email.policy
import email.utils
import re
from dataclasses import dataclass
from typing import Literal

from diagnostics.model.account import AccountConfig, Company, SmtpSettings, Subcompany

Route = Literal["own_server", "platform"]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Identity:
    """Whose name and address a mail goes out with, and by which route."""

    sender: str  # the (sub)company whose identity it is
    address: str
    route: Route
    smtp: SmtpSettings | None
    why: str

    @property
    def server(self) -> str:
        if self.smtp is None:
            return "the platform's own servers"
        return f"{self.smtp.host}:{self.smtp.port}"


@dataclass(frozen=True)
class Resolution:
    """One position's effective sender."""

    position: str
    owner: str  # the (sub)company the position belongs to
    identity: Identity
    display_name: str

    def as_row(self) -> dict[str, str]:
        return {
            "position": self.position,
            "(sub)company": self.owner,
            "from": shown_from(self.display_name, self.identity.address),
            "display name": self.display_name,
            "route": "own SMTP server"
            if self.identity.route == "own_server"
            else "platform fallback",
            "server": self.identity.server,
            "why": self.identity.why,
        }


def identity_of(config: AccountConfig, owner: Company | Subcompany) -> Identity:
    """The identity ``owner``'s mail goes out with, and why."""
    inbound = config.inbound_address
    ui = config.profile.ui
    if owner.custom_address and owner.smtp:
        return Identity(
            owner.name,
            owner.custom_address,
            "own_server",
            owner.smtp,
            f"{owner.name} has a custom address and SMTP settings",
        )
    if owner.custom_address:
        return Identity(
            owner.name,
            inbound,
            "platform",
            None,
            f"{owner.name} has a custom address but no SMTP settings ('{ui.use_for_sending}' is No): "
            "mail goes out from the platform's inbound address",
        )
    if isinstance(owner, Subcompany):
        parent = identity_of(config, config.company)
        return Identity(
            parent.sender,
            parent.address,
            parent.route,
            parent.smtp,
            f"{owner.name} has no settings of its own and falls back to {config.company.name}: {parent.why}",
        )
    return Identity(
        owner.name,
        inbound,
        "platform",
        None,
        f"{owner.name} has no custom address: mail goes out from the platform's inbound address",
    )


def display_name(config: AccountConfig, identity: Identity, employee: str | None) -> str:
    """The From display name: the employee's, or the sending (sub)company's name."""
    if config.company.sender_name == "employee" and employee:
        return employee
    return identity.sender


def resolve(config: AccountConfig) -> list[Resolution]:
    """Every position's effective sender (a position naming no subcompany belongs to the parent)."""
    employee = config.employees[0].name if config.employees else None
    rows = []
    for position in config.positions:
        owner: Company | Subcompany = config.company
        if position.subcompany and position.subcompany != config.company.name:
            owner = config.subcompany(position.subcompany)
        identity = identity_of(config, owner)
        rows.append(
            Resolution(
                position.title, owner.name, identity, display_name(config, identity, employee)
            )
        )
    return rows


def shared_addresses(config: AccountConfig) -> dict[str, list[str]]:
    """Custom addresses used by more than one (sub)company, with their users."""
    users: dict[str, list[str]] = {}
    for identity in config.identities():
        if identity.custom_address:
            users.setdefault(identity.custom_address.casefold(), []).append(identity.name)
    return {address: names for address, names in users.items() if len(names) > 1}


# -- the From header --------------------------------------------------------------------------


class UnsafeName(ValueError):
    """A display name that cannot go into a header as it is (CR, LF, other controls)."""


def check_name(name: str) -> str:
    """``name`` when it is safe in a header; UnsafeName naming the character otherwise."""
    match = _CONTROL.search(name)
    if match:
        raise UnsafeName(f"the name holds the control character U+{ord(match.group()):04X}")
    return name


def format_from(name: str, address: str) -> str:
    """The From header's value: quoted per RFC 5322 when needed (Unicode left as is)."""
    return str(email.headerregistry.Address(display_name=check_name(name), addr_spec=address))


def shown_from(name: str, address: str) -> str:
    """The From value for a reader; an unsafe name is shown escaped, never raw."""
    try:
        return format_from(name, address)
    except UnsafeName:
        return f"{name!r} <{address}>"


def encode_from(name: str, address: str) -> str:
    """The From header field as it goes on the wire.

    An ASCII name is quoted per RFC 5322 where needed. Any other name becomes RFC 2047 "B"
    encoded words of whole characters, folded between words: the standard library's
    encoder can leave a space only in the folding between two encoded words, where
    RFC 2047 section 6.2 says a reader must drop it, and so change the name.
    """
    check_name(name)
    if name.isascii():
        return f"From: {format_from(name, address)}"
    words, chunk = [], ""
    for character in name:
        # 45 octets make 60 base64 characters: with "=?utf-8?b??=" a word stays within 75.
        if len((chunk + character).encode("utf-8")) > 45:
            words.append(chunk)
            chunk = ""
        chunk += character
    words.append(chunk)
    encoded = [f"=?utf-8?b?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words]
    return "From: " + "\r\n ".join(encoded) + f" <{address}>"


def decode_from(field: str) -> tuple[str, str]:
    """(display name, address) of a From header field as it arrived.

    The display name is decoded with :func:`email.header.decode_header`, which drops the
    whitespace between adjacent encoded words as RFC 2047 section 6.2 says; the address
    parser of ``email.policy.default`` keeps it, turning a long folded name into another.
    """
    value = field.split(":", 1)[1] if field.lower().startswith("from:") else field
    value = re.sub(r"\r?\n[ \t]", " ", value).strip()
    name, address = email.utils.parseaddr(value)
    decoded = str(email.header.make_header(email.header.decode_header(name))) if name else ""
    return decoded, address
