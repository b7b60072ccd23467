"""The account: one company, its subcompanies, positions and employees, and what each sends as.

One model for every caller. The account file's loader (:mod:`diagnostics.config`) and
``maildiag smtp``'s options (:mod:`diagnostics.adhoc`) both build it through
:mod:`diagnostics.model.validate`, which checks each value by the rules of
:mod:`diagnostics.fields`; the classes themselves only hold checked values. A copy with other
values (``dataclasses.replace``) is not checked again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from diagnostics.profiles import IPNetwork, PlatformProfile, load_profiles
from diagnostics.secrets import Secret

Encryption = Literal["starttls", "tls", "none"]
ENCRYPTIONS: dict[str, Encryption] = {"starttls": "starttls", "tls": "tls", "none": "none"}
SenderName = Literal["employee", "company"]


@dataclass(frozen=True)
class SmtpSettings:
    """The SMTP settings the platform uses to send as a custom address."""

    host: str
    port: int
    encryption: Encryption
    #: The login: usually the custom address, but whatever the server accepts (``CORP\\jobs``).
    account: str
    password: Secret

    def on_port(self, port: int, encryption: str) -> SmtpSettings:
        """These settings on another port with another encryption (``starttls``, ``tls`` or
        ``none``; KeyError for another), as smtp.settings_probe tries them."""
        return replace(self, port=port, encryption=ENCRYPTIONS[encryption])


MailboxEncryption = Literal["tls", "starttls"]
#: The IMAP port of each encryption (RFC 8314: 993 implicit TLS; 143 with STARTTLS).
IMAP_PORTS: dict[str, int] = {"tls": 993, "starttls": 143}


@dataclass(frozen=True)
class MailboxSettings:
    """The IMAP mailbox the tool reads in a live round trip: the custom address's own.

    Exactly one credential: ``password`` (a :class:`Secret`), or ``token_command``, a command
    (argument list, no shell) that prints an OAuth2 access token for XOAUTH2, run only when
    the mailbox is opened.
    """

    host: str
    port: int
    encryption: MailboxEncryption
    account: str
    password: Secret | None = None
    token_command: tuple[str, ...] | None = None

    @property
    def where(self) -> str:
        """``account on host:port`` for findings (no secret)."""
        return f"{self.account} on {self.host}:{self.port}"


@dataclass(frozen=True)
class DkimSigning:
    """The key a live round trip signs its test message with, as the company's own mail is
    signed: ``selector`` under the custom address's domain, and the private key (PEM) read
    from ``key_file``, held like a password."""

    selector: str
    key: Secret


@dataclass(frozen=True)
class SendingIdentity:
    """What a company or subcompany sends as: custom address, SMTP settings, allowlist."""

    name: str
    custom_address: str | None = None
    smtp: SmtpSettings | None = None
    allowlist: tuple[IPNetwork, ...] | None = None
    #: The mailbox given in the file; :meth:`mailbox_settings` says which one is read.
    mailbox: MailboxSettings | None = None
    #: The DKIM key the live round trip signs with (None: its message goes unsigned).
    dkim: DkimSigning | None = None

    def mailbox_settings(self) -> MailboxSettings | None:
        """The mailbox a live round trip reads for this identity: the file's ``mailbox``, or
        by default the custom address's own mailbox on the SMTP host over IMAPS with the SMTP
        account and password. None when neither is known."""
        if self.mailbox is not None:
            return self.mailbox
        if self.smtp is None or self.custom_address is None:
            return None
        return MailboxSettings(
            host=self.smtp.host,
            port=IMAP_PORTS["tls"],
            encryption="tls",
            account=self.smtp.account,
            password=self.smtp.password,
        )


@dataclass(frozen=True)
class Company(SendingIdentity):
    """The parent company's identity and sending settings."""

    sender_name: SenderName = "employee"


@dataclass(frozen=True)
class Subcompany(SendingIdentity):
    """A subcompany; what it leaves out falls back to the parent company."""


@dataclass(frozen=True)
class Position:
    """A job position; it belongs to a subcompany, or to the parent when none is named."""

    title: str
    subcompany: str | None = None


@dataclass(frozen=True)
class Employee:
    """An employee who may send candidate mail under their own name."""

    name: str
    email: str


@dataclass(frozen=True)
class Platform:
    """Which platform profile and which account on it."""

    profile: str
    account: str


@dataclass(frozen=True)
class AccountConfig:
    """One account's whole configuration."""

    platform: Platform
    company: Company
    subcompanies: tuple[Subcompany, ...] = ()
    positions: tuple[Position, ...] = ()
    employees: tuple[Employee, ...] = ()

    @property
    def profile(self) -> PlatformProfile:
        """The platform profile this account uses."""
        return load_profiles()[self.platform.profile]

    @property
    def inbound_address(self) -> str:
        """The platform's inbound address for this account."""
        return self.profile.inbound_address_for(self.platform.account)

    def identities(self) -> tuple[Company | Subcompany, ...]:
        """The company, then each subcompany: everything that sends under its own name."""
        return (self.company, *self.subcompanies)

    def subcompany(self, name: str) -> Subcompany:
        """The subcompany called ``name``; KeyError when there is none."""
        for sub in self.subcompanies:
            if sub.name == name:
                return sub
        raise KeyError(name)
