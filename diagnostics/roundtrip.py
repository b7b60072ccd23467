"""The round trip's moving parts: the tagged test message, and the mailboxes it is looked for in.

A round trip sends a uniquely tagged message (token in Message-ID, Subject and an
``X-Maildiag-Token`` header), DKIM-signed when a key is published, to the custom address,
and then looks for it where it should arrive (the platform's inbound mailbox), where a copy
should stay (the company mailbox) and where a bounce would come back (the test sender's own
mailbox). :class:`Mailboxes` is what a context offers for that: the sandbox's Maildirs, or —
in live mode — nothing yet, and the checks say what to do by hand.
"""

from __future__ import annotations

import email.policy
import email.utils
import secrets
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from diagnostics.findings import Cause
from diagnostics.parse.dkim import DKIMKey, sign

TOKEN_HEADER = "X-Maildiag-Token"  # noqa: S105 - a header name, not a password


@dataclass(frozen=True)
class Arrival:
    """A stored message that carries the token: where, when, and its bytes."""

    folder: str
    data: bytes
    stored_at: float


class Mailboxes(Protocol):
    """Where a round trip's message and its echoes can be found."""

    sender: str
    dkim_key: DKIMKey | None

    def arrived(self, token: str) -> list[Arrival]:
        """The platform inbound copies carrying ``token`` (any folder)."""

    def local_copies(self, address: str, token: str) -> list[Arrival]:
        """The copies carrying ``token`` kept in the company mailbox of ``address``."""

    def bounces(self, token: str) -> list[Arrival]:
        """Delivery status notifications about ``token`` that reached the sender."""

    def arrived_since(self, since: float) -> list[Arrival]:
        """Every message the platform stored since ``since`` (a Unix time), token or not."""

    def received_by(self, address: str) -> list[Arrival]:
        """The messages in the mailbox of candidate ``address``."""


def new_token() -> str:
    return f"maildiag-rt-{secrets.token_hex(8)}"


def probe_message(token: str, *, sender: str, recipient: str, key: DKIMKey | None) -> bytes:
    """The round trip's message, as a candidate's mail client would write it (CRLF)."""
    domain = sender.rsplit("@", 1)[-1]
    message = EmailMessage()
    message["From"] = email.utils.formataddr(("maildiag round trip", sender))
    message["To"] = recipient
    message["Cc"] = f"cc-{token}@{domain}"
    message["Reply-To"] = sender
    message["Subject"] = f"Bewerbung: maildiag round trip {token}"
    message["Date"] = email.utils.formatdate()
    message["Message-ID"] = f"<{token}@{domain}>"
    message["In-Reply-To"] = f"<invitation-{token}@{recipient.rsplit('@', 1)[-1]}>"
    message["References"] = f"<invitation-{token}@{recipient.rsplit('@', 1)[-1]}>"
    message[TOKEN_HEADER] = token
    message.set_content(
        "Guten Tag,\n\nthis message tests the redirection of the recruiting mailbox to the\n"
        "recruiting platform. It should arrive there with every header intact.\n"
    )
    message.add_alternative(
        "<p>Guten Tag,</p><p>this message tests the redirection of the recruiting mailbox.</p>",
        subtype="html",
    )
    data = message.as_bytes(policy=email.policy.SMTP)
    return sign(data, key) if key is not None else data


@dataclass
class LiveWatch:
    """What the live round trip saw, besides what :class:`~diagnostics.checks.redirect.
    RoundTrip` records for both modes."""

    mailbox: str = ""
    # How the mailbox logs in: "password", or "token" (token_command, XOAUTH2).
    credential: str = "password"
    # Where the signing key of the test message is published (``s1._domainkey.acme.example``);
    # "" when the account file gives no dkim: key and the message went unsigned.
    signed_by: str = ""
    via: str = "mx"
    # Why the mailbox could not be read (then nothing was sent), and the cause to report.
    mailbox_error: str | None = None
    mailbox_step: str | None = None
    login: str = ""
    idle: bool = False
    folders_searched: int = 0
    cleaned: int | None = None
    clean_note: str = ""
    events: list[str] = field(default_factory=list)
    # --probe-platform: the platform's inbound MX, its answer to RCPT TO the inbound address
    # (code and text), or why it could not be asked.
    platform_mx: str | None = None
    platform_reply: str | None = None
    platform_code: int | None = None
    platform_error: str | None = None
    # False when only --probe-platform was asked for: nothing was sent.
    sent: bool = True

    @property
    def platform_refused(self) -> bool:
        """The platform's MX said it has no such recipient (a 5xx to RCPT TO)."""
        return self.platform_code is not None and 500 <= self.platform_code < 600

    def evidence(self) -> dict[str, Any]:
        return {
            "mailbox": self.mailbox,
            "via": self.via,
            "login": self.login,
            "signed_by": self.signed_by,
            "idle": self.idle,
            "folders_searched": self.folders_searched,
            "mailbox_error": self.mailbox_error,
            "cleaned": self.cleaned,
            "clean_note": self.clean_note,
            "events": list(self.events),
            "platform_mx": self.platform_mx,
            "platform_reply": self.platform_reply,
            "platform_error": self.platform_error,
        }


@dataclass
class RoundTrip:
    """What one round trip saw."""

    address: str
    token: str = ""
    sent: bytes = b""
    sent_at: float = 0.0
    # When the company's MX accepted it (its reply to the end of DATA): where the company's
    # side of the delivery starts, which the latency is measured from.
    accepted_at: float = 0.0
    delivered_to: str | None = None
    delivery_error: str | None = None
    delivery_cause: Cause | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    # What else reached the platform meanwhile (a provider's forwarding confirmation, say).
    others: list[Arrival] = field(default_factory=list)
    local_copies: list[Arrival] = field(default_factory=list)
    bounces: list[Arrival] = field(default_factory=list)
    waited_s: float = 0.0
    # Live mode: the company mailbox watched over IMAP (None in the sandbox).
    live: LiveWatch | None = None
    latency_s: float | None = None

    @property
    def arrived(self) -> Arrival | None:
        return self.arrivals[0] if self.arrivals else None

    def evidence(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "token": self.token,
            "delivered_to": self.delivered_to,
            "delivery_error": self.delivery_error,
            "arrivals": [a.folder for a in self.arrivals],
            "local_copies": len(self.local_copies),
            "bounces": len(self.bounces),
            "waited_s": round(self.waited_s, 3),
            "latency_s": round(self.latency_s, 3) if self.latency_s is not None else None,
            **({"live": self.live.evidence()} if self.live is not None else {}),
        }


@dataclass(frozen=True)
class RoundTripOptions:
    """A live round trip asked for: ``--roundtrip [--via mx|submission] [--clean]
    [--probe-platform]``."""

    via: str = "mx"
    clean: bool = False
    probe_platform: bool = False
    # False: only --probe-platform was asked for; no test message is sent.
    send: bool = True
