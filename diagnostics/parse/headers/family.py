"""The server family (Exchange, Google, Postfix, Exim, Sendmail) of the system that passed the
message on to its final domain: what the fix for a forwarding fault is written for."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from email.message import Message

from diagnostics.parse.headers.forwarding import classify_forwarding
from diagnostics.parse.headers.lists import list_address, list_domain
from diagnostics.parse.headers.message import (
    MessageInput,
    as_message,
    header_addresses,
    header_text,
)
from diagnostics.parse.headers.received import Family, Hop, parse_received


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def _in_domains(host: str | None, domains: Iterable[str]) -> bool:
    if not host:
        return False
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains if d)


def _final_domain(message: Message, hops: Sequence[Hop]) -> str | None:
    for name in ("Delivered-To", "X-Original-To"):
        delivered = header_addresses(message, name)
        if delivered:
            return _domain(delivered[0][1])
    for hop in reversed(hops):
        if hop.for_address and "@" in hop.for_address:
            return _domain(hop.for_address)
    return None


def _headers_named(message: Message, prefix: str) -> bool:
    return any(key.lower().startswith(prefix) for key in message.keys())


_GMAIL_IDS = re.compile(r"@(?:mail\.)?gmail\.com>?$", re.IGNORECASE)
_OUTLOOK_IDS = re.compile(r"@[^@>]*(?:\.outlook\.com|\.exchangelabs\.com)>?$", re.IGNORECASE)


def _sender_side(message: Message, hops: Sequence[Hop]) -> Family | None:
    """The family of the system that wrote a forward (a new message): Microsoft 365's
    X-MS-Exchange-CrossTenant-* headers or an Outlook Message-ID, Gmail's Message-ID or
    X-Gm-*/X-Google-* headers, else the oldest hop that names its software."""
    message_id = (header_text(message, "Message-ID") or "").strip()
    if _headers_named(message, "x-ms-exchange-crosstenant-") or _OUTLOOK_IDS.search(message_id):
        return "exchange"
    if _GMAIL_IDS.search(message_id) or _headers_named(message, "x-gm-"):
        return "google"
    return next((hop.family for hop in hops if hop.family is not None), None)


def _gmail_forward(message: Message, hops: Sequence[Hop]) -> bool:
    """X-Forwarded-To/-For came from Gmail (other servers, qmail's aliases among them, write
    the same headers): a Google hop, Gmail's forwarding envelope or X-Gm-* headers."""
    return_path = header_text(message, "Return-Path") or ""
    return (
        any(hop.family == "google" for hop in hops)
        or "+caf_=" in return_path.lower()
        or _headers_named(message, "x-gm-")
        or _headers_named(message, "x-google-")
    )


def _list_family(
    message: Message, hops: Sequence[Hop], final: str | None
) -> tuple[bool, Family | None]:
    """The family of the list server, for a message a mailing list redistributed: the newest
    hop that names its software among those from the list server's first hop on (by a host of
    the list's domain, or for the list's address), before the final domain's servers. None when
    the list server's hops name no software: the original sender's servers are not the list.
    The first value says whether the list server's hops were found at all."""
    address, domain = list_address(message), list_domain(message)
    parent = domain.split(".", 1)[1] if domain and domain.count(".") >= 2 else None
    domains = [d for d in (domain, parent) if d]
    first = next(
        (
            n
            for n, hop in enumerate(hops)
            if _in_domains(hop.by_host, domains)
            or (address and (hop.for_address or "").lower() == address)
        ),
        None,
    )
    if first is None:
        return False, None
    listed = [
        hop
        for hop in hops[first:]
        if not (
            final and _in_domains(hop.by_host, [final]) and not _in_domains(hop.by_host, domains)
        )
    ]
    if len(listed) > 1 and listed[-1] is hops[-1] and not _in_domains(hops[-1].by_host, domains):
        listed = listed[:-1]  # the newest hop outside the list's domain received it
    return True, next((hop.family for hop in reversed(listed) if hop.family is not None), None)


def server_family(message: MessageInput) -> Family | None:
    """The family of the system that passed the message on to its final domain.

    Forwarding headers decide first (X-MS-Exchange-Organization-AutoForwarded and
    X-MS-Exchange-Inbox-Rules-Loop: Exchange; X-Forwarded-To/-For: Gmail when a Google hop or
    Gmail header confirms it). A message a mailing list redistributed gets the list server's
    family (its newest hop that names its software); a forward, the family of the system that
    wrote it (Microsoft 365 and Gmail headers and Message-IDs first). Otherwise the newest hop
    before the final domain's servers that names its software, among the hops outside the
    sender's own domain when there are any; then X-MS-Exchange-* or X-Gm-*/X-Google-* headers
    anywhere.
    """
    msg = as_message(message)
    keys = {k.lower() for k in msg.keys()}
    hops = parse_received(msg)
    if keys & {"x-ms-exchange-organization-autoforwarded", "x-ms-exchange-inbox-rules-loop"}:
        return "exchange"
    final = _final_domain(msg, hops)
    styles = classify_forwarding(msg).styles
    if "mailing_list" in styles:
        located, family = _list_family(msg, hops, final)
        if located:
            return family
    if keys & {"x-forwarded-to", "x-forwarded-for"}:
        return "google" if _gmail_forward(msg, hops) else None
    if {"forward_inline", "forward_attachment"} & set(styles):
        found = _sender_side(msg, hops)
        if found is not None:
            return found
    entry = next(
        (n for n, hop in enumerate(hops) if final and _in_domains(hop.by_host, [final])),
        len(hops) - 1 if len(hops) > 1 else len(hops),
    )
    before = hops[:entry]
    senders = {
        _domain(a) for name in ("From", "X-Original-From") for _, a in header_addresses(msg, name)
    }
    # The sender's own servers say nothing about the forwarder.
    outside = [h for h in before if not _in_domains(h.by_host, senders)]
    for hop in reversed(outside or before):
        if hop.family is not None:
            return hop.family
    if _headers_named(msg, "x-ms-exchange-"):
        return "exchange"
    if _headers_named(msg, "x-gm-") or _headers_named(msg, "x-google-"):
        return "google"
    return None
