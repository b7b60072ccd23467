"""The server family (Exchange, Google, Postfix, Exim, Sendmail) that passed the message on
to its final domain: what the fix for a forwarding fault is written for."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from email.message import Message

from diagnostics.parse.headers.message import (
    MessageInput,
    as_message,
    header_addresses,
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


def server_family(message: MessageInput) -> Family | None:
    """The family of the server that passed the message on to its final domain.

    Forwarding headers decide first (X-MS-Exchange-Organization-AutoForwarded and
    X-MS-Exchange-Inbox-Rules-Loop: Exchange; X-Forwarded-To/-For: Gmail). Then the newest
    hop before the final domain's servers that names its software, among the hops outside the
    sender's own domain when there are any; then X-MS-Exchange-* or X-Gm-*/X-Google-* headers
    anywhere.
    """
    msg = as_message(message)
    keys = {k.lower() for k in msg.keys()}
    if keys & {"x-ms-exchange-organization-autoforwarded", "x-ms-exchange-inbox-rules-loop"}:
        return "exchange"
    if keys & {"x-forwarded-to", "x-forwarded-for"}:
        return "google"
    hops = parse_received(msg)
    final = _final_domain(msg, hops)
    entry = next(
        (n for n, hop in enumerate(hops) if final and _in_domains(hop.by_host, [final])),
        len(hops) - 1 if len(hops) > 1 else len(hops),
    )
    before = hops[:entry]
    senders = {
        _domain(a) for name in ("From", "X-Original-From") for _, a in header_addresses(msg, name)
    }
    # The sender's own servers say nothing about the forwarder, unless the forwarder is the
    # sender (a forward is a new message from the company's address).
    outside = [h for h in before if not _in_domains(h.by_host, senders)]
    for hop in reversed(outside or before):
        if hop.family is not None:
            return hop.family
    if _headers_named(msg, "x-ms-exchange-"):
        return "exchange"
    if _headers_named(msg, "x-gm-") or _headers_named(msg, "x-google-"):
        return "google"
    return None
