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
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

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
