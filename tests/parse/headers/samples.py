"""Messages the header tests share: a candidate's reply as the sandbox scenarios send it, the
Received headers of a redirect, and the corpus in fixtures/messages/."""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).resolve().parents[3] / "fixtures" / "messages"
ALL_LABELS: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "labels.yaml").read_text("utf-8"))
# The messages written for the corpus (documentation addresses, with originals) and the real
# messages of real/, published in mail programs' test data.
LABELS = {name: label for name, label in ALL_LABELS.items() if not name.startswith("real/")}
REAL = {name: label for name, label in ALL_LABELS.items() if name.startswith("real/")}
UTC = dt.UTC


def application(**overrides: str | None) -> bytes:
    """A candidate's reply with every retained header, as the sandbox scenarios send it."""
    headers: dict[str, str | None] = {
        "From": "Max Mustermann <max.mustermann@example.org>",
        "To": "jobs@acme.example",
        "Cc": "max.privat@example.org",
        "Subject": "Re: Ihre Bewerbung als Store Manager",
        "Date": "Thu, 26 Nov 2026 09:30:00 +0100",
        "Message-ID": "<reply-1@example.org>",
        "Reply-To": "max.mustermann@example.org",
        "In-Reply-To": "<invite-7@acme.example>",
        "References": "<invite-7@acme.example>",
    }
    headers.update(overrides)
    message = EmailMessage()
    for name, value in headers.items():
        if value is not None:
            message[name] = value
    message.set_content("Guten Tag,\n\ngerne komme ich zum Gespräch.\n")
    return message.as_bytes(policy=email.policy.SMTP)


def received(*lines: str) -> bytes:
    """Received header fields, newest first, as servers prepend them."""
    return b"".join(f"Received: {line}\r\n".encode() for line in lines)


MX_HOP = (
    "from mail.example.org (mail.example.org [198.51.100.7]) by mx.acme.example (Postfix) "
    "with ESMTPS id 4ZbQ1 for <jobs@acme.example>; Thu, 26 Nov 2026 09:30:02 +0100"
)
PLATFORM_HOP = (
    "from mx.acme.example (mx.acme.example [192.0.2.25]) by mx.m.personio.de (Postfix) "
    "with ESMTPS id 4ZbQ2 for <acme-jobs@m.personio.de>; Thu, 26 Nov 2026 09:30:04 +0100"
)


def redirected(data: bytes) -> bytes:
    return received(PLATFORM_HOP, MX_HOP) + data


FORWARDER, PLATFORM = "jobs@acme.example", "acme-jobs@m.personio.de"


def loop_hop(by: str, recipient: str, n: int) -> str:
    return f"from x.example.org (x.example.org [192.0.2.{n}]) by {by} (Postfix) with ESMTP id Q{n} for <{recipient}>; Thu, 26 Nov 2026 09:30:{n:02d} +0100"
