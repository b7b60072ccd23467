"""Messages a mailing list redistributed (List-Id and the headers list servers add) and
reports that return a message (bounces, a list's notice that a post was refused): what
:mod:`diagnostics.parse.headers.forwarding` must not read as a redirect or a forward, and
where :mod:`diagnostics.parse.headers.family` finds the list server."""

from __future__ import annotations

import re
from email.message import Message

from diagnostics.parse.headers.message import clip, header_addresses, header_text

_REPORT_SENDERS = re.compile(
    r"^(?:mailer-daemon|postmaster|mail-daemon|owner-.+|.+[-+](?:owner|request|bounces?))$",
    re.IGNORECASE,
)


def returned_report(message: Message) -> bool:
    """``message`` is a report that returns a message (a bounce, a delay warning, a list's
    notice that a post was refused): its message/rfc822 part is the returned message, not a
    forward. A multipart/report, an Auto-Submitted report, or a message from a mailer daemon,
    a postmaster or a list's owner address."""
    if message.get_content_type() == "multipart/report":
        return True
    auto = (header_text(message, "Auto-Submitted") or "no").strip().lower()
    if auto != "no":
        return True
    senders = header_addresses(message, "From")
    local = senders[0][1].partition("@")[0] if senders else ""
    return (
        bool(_REPORT_SENDERS.match(local))
        or (header_text(message, "Return-Path") or "").strip() == "<>"
    )


_LIST_HEADERS = ("List-Id", "X-Mailing-List", "Mailing-List", "X-BeenThere", "List-Post")


def list_address(message: Message) -> str | None:
    """The address of the mailing list that passed ``message`` on, as its headers name it."""
    for name in ("X-BeenThere", "X-Mailing-List", "List-Post", "Mailing-List"):
        value = header_text(message, name) or ""
        found = re.search(r"(?:mailto:)?([^\s<>@:;,\"]+@[^\s<>;,\"]+)", value, re.IGNORECASE)
        if found:
            return found.group(1).rstrip(">").lower()
    return None


def list_domain(message: Message) -> str | None:
    """The domain of the list that passed ``message`` on: its address's, else List-Id's
    without the list's own label."""
    address = list_address(message)
    if address:
        return address.rpartition("@")[2].rstrip(".")
    list_id = re.search(r"<([^<>@\s]+)>", header_text(message, "List-Id") or "")
    if list_id and list_id.group(1).count(".") >= 2:
        return list_id.group(1).partition(".")[2].lower().rstrip(".")
    return None


def list_signs(message: Message) -> list[str]:
    """Evidence that a mailing list redistributed the message (List-Id, X-Mailing-List,
    X-BeenThere, List-Post; Precedence: list or bulk and an ARC seal of the list's domain
    support it)."""
    named = [(name, header_text(message, name)) for name in _LIST_HEADERS]
    listed = [f"{name}: {clip(value, 60)}" for name, value in named if value]
    if not listed:
        return []
    signs = [f"{', '.join(listed)}: a mailing list redistributed it"]
    precedence = (header_text(message, "Precedence") or "").strip().lower()
    if precedence in ("list", "bulk", "junk"):
        signs.append(f"Precedence: {precedence}")
    domain = list_domain(message)
    if domain:
        base = domain.split(".", 1)[1] if domain.count(".") >= 2 else domain
        for seal in message.get_all("ARC-Seal") or []:
            sealer = re.search(r"\bd=([^;\s]+)", str(seal))
            if sealer and (
                sealer.group(1).lower() in (domain, base)
                or domain.endswith("." + sealer.group(1).lower())
            ):
                signs.append(f"ARC-Seal by {sealer.group(1)}, the list's domain")
                break
    return signs
