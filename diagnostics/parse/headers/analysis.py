"""Every header analysis of one arrived message at once: what ``maildiag headers`` reports.

The command line prints it with :func:`diagnostics.report.terminal.print_headers`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from diagnostics.parse.headers.arc import ArcChain, parse_arc
from diagnostics.parse.headers.authres import AuthResult, parse_authentication_results
from diagnostics.parse.headers.family import server_family
from diagnostics.parse.headers.forwarding import StyleVerdict, classify_forwarding, remediation_for
from diagnostics.parse.headers.loops import LoopVerdict, detect_loop
from diagnostics.parse.headers.message import (
    MessageInput,
    as_message,
    header_addresses,
)
from diagnostics.parse.headers.received import Family, Hop, parse_received, total_delay
from diagnostics.parse.headers.retention import Retention, compare_retention


@dataclass(frozen=True)
class HeaderAnalysis:
    """What ``maildiag headers`` reports about one arrived message."""

    hops: tuple[Hop, ...]
    authentication_results: tuple[AuthResult, ...]
    arc: ArcChain
    family: Family | None
    verdict: StyleVerdict
    loop: LoopVerdict
    retention: Retention | None
    custom_address: str | None = None
    inbound_address: str | None = None

    @property
    def total_delay_s(self) -> float | None:
        return total_delay(self.hops)

    @property
    def remediation(self) -> str | None:
        """The fix for the gravest style that is not a redirect, with the message's addresses."""
        faults = self.verdict.faults
        if not faults:
            return None
        addresses = {
            key: value
            for key, value in (
                ("custom_address", self.custom_address),
                ("inbound_address", self.inbound_address),
            )
            if value
        }
        return remediation_for(faults[0], self.family, **addresses)

    @property
    def failed(self) -> bool:
        """Retention failed, a style other than redirect was found, or the message looped."""
        retention_failed = self.retention is not None and not self.retention.retained
        return retention_failed or bool(self.verdict.faults) or self.loop.looped

    def to_dict(self) -> dict[str, Any]:
        return {
            "hops": [h.to_dict() for h in self.hops],
            "total_delay_s": self.total_delay_s,
            "authentication_results": [r.to_dict() for r in self.authentication_results],
            "arc": self.arc.to_dict(),
            "family": self.family,
            "styles": list(self.verdict.styles),
            "evidence": list(self.verdict.evidence),
            "remediation": self.remediation,
            "loop": self.loop.to_dict(),
            "retention": self.retention.to_dict() if self.retention else None,
        }


def analyse_headers(
    arrived: MessageInput,
    *,
    original: MessageInput | None = None,
    addresses: Iterable[str] = (),
) -> HeaderAnalysis:
    """Every analysis of this module on ``arrived`` (and ``original`` when given).

    The loop check watches ``addresses``, by default the custom and inbound addresses the
    headers name (:func:`redirect_addresses`).
    """
    msg = as_message(arrived)
    custom, inbound = redirect_addresses(msg if original is None else as_message(original), msg)
    watched = tuple(addresses) or tuple(a for a in (custom, inbound) if a)
    return HeaderAnalysis(
        hops=parse_received(msg),
        authentication_results=parse_authentication_results(msg),
        arc=parse_arc(msg),
        family=server_family(msg),
        verdict=classify_forwarding(msg, original=original),
        loop=detect_loop(msg, addresses=watched),
        retention=compare_retention(original, msg) if original is not None else None,
        custom_address=custom,
        inbound_address=inbound,
    )


def redirect_addresses(sent: MessageInput, arrived: MessageInput) -> tuple[str | None, str | None]:
    """The custom address the candidate wrote to and the inbound address the message was
    delivered to, as far as the headers tell (None where they do not).

    The inbound address is the topmost Delivered-To or X-Original-To, else the last envelope
    recipient of the Received chain. The custom address is the first To/Cc address of ``sent``
    that is not the inbound address; for a forward, which is addressed to the inbound address,
    the forwarder's From.
    """
    sent_msg, arrived_msg = as_message(sent), as_message(arrived)
    inbound = next(
        (
            a
            for name in ("Delivered-To", "X-Original-To")
            for _, a in header_addresses(arrived_msg, name)
        ),
        None,
    )
    if inbound is None:
        recipients = [h.for_address for h in parse_received(arrived_msg) if h.for_address]
        inbound = recipients[-1].lower() if recipients else None
    named = [
        a for name in ("To", "Cc") for _, a in header_addresses(sent_msg, name) if a != inbound
    ]
    if named:
        return named[0], inbound
    senders = header_addresses(sent_msg, "From")
    return (senders[0][1] if senders else None), inbound
