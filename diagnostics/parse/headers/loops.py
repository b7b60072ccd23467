"""Mail loops (``redirect.loop``), read off the Received chain and the delivery headers."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from diagnostics.findings import Cause, Outcome, Status
from diagnostics.parse.headers.message import (
    MessageInput,
    and_numbers,
    as_message,
    header_addresses,
)
from diagnostics.parse.headers.received import Hop, parse_received

SUSPICIOUS_HOPS = 25
"""More Received headers than this suggest a loop (Postfix's hopcount_limit is 50, Exim's
received_headers_max 30)."""


@dataclass(frozen=True)
class LoopVerdict:
    """Whether the Received chain and delivery headers show a mail loop."""

    looped: bool
    evidence: tuple[str, ...]
    hop_count: int

    def outcome(self) -> Outcome:
        """The ``redirect.loop`` outcome."""
        if not self.looped:
            return Outcome(Status.PASS, "No mail loop", f"{self.hop_count} hop(s), none repeated")
        return Outcome(
            Status.FAIL,
            "Mail loop",
            "; ".join(self.evidence),
            cause=Cause.LOOP_DETECTED,
            remediation=(
                "Two redirections point at each other (or a redirect points back at its own "
                "address through an alias): make the custom address redirect to the platform's "
                "inbound address only, and remove any rule that sends mail from the platform "
                "back to the custom address."
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"looped": self.looped, "evidence": list(self.evidence), "hop_count": self.hop_count}


def _loopback(hop: Hop) -> bool:
    if hop.from_host and hop.from_host.lower().rstrip(".") == "localhost":
        return True
    if hop.from_address is None:
        return False
    return ipaddress.ip_address(hop.from_address).is_loopback


def detect_loop(message: MessageInput, *, addresses: Iterable[str] = ()) -> LoopVerdict:
    """A loop shows as the same (by-host, for-address) pair twice in the Received chain, a
    Delivered-To or X-Original-To value repeated, or more than :data:`SUSPICIOUS_HOPS` hops.

    ``addresses`` (the custom address, the inbound address) are also watched in the sequence
    of envelope recipients: one that comes back after another recipient was in between is a
    loop even through different servers. A hop received from loopback (a content filter such
    as amavis handing the message back to the same server) does not count as a repeat.
    """
    msg = as_message(message)
    hops = parse_received(msg)
    evidence: list[str] = []
    pairs: dict[tuple[str, str], list[int]] = {}
    for hop in hops:
        if hop.by_host and hop.for_address and not _loopback(hop):
            key = (hop.by_host.lower().rstrip("."), hop.for_address.lower())
            pairs.setdefault(key, []).append(hop.index)
    for (by_host, for_address), indices in pairs.items():
        if len(indices) > 1:
            evidence.append(
                f"{by_host} received it for {for_address} {len(indices)} times "
                f"(hops {and_numbers(indices)})"
            )
    for name in ("Delivered-To", "X-Original-To"):
        counts: dict[str, int] = {}
        for _, addr in header_addresses(msg, name):
            counts[addr] = counts.get(addr, 0) + 1
        evidence += [f"{name}: {a} appears {n} times" for a, n in counts.items() if n > 1]
    recipients = [(h.index, h.for_address.lower()) for h in hops if h.for_address]
    for address in dict.fromkeys(a.lower() for a in addresses):
        visits = [
            index
            for position, (index, recipient) in enumerate(recipients)
            if recipient == address and (position == 0 or recipients[position - 1][1] != address)
        ]
        if len(visits) > 1:
            evidence.append(
                f"{address} became the recipient again after another one (hops {and_numbers(visits)})"
            )
    if len(hops) > SUSPICIOUS_HOPS:
        evidence.append(
            f"{len(hops)} Received headers: more than {SUSPICIOUS_HOPS} hops suggests a loop "
            "(Postfix gives up at 50, Exim at 30)"
        )
    return LoopVerdict(looped=bool(evidence), evidence=tuple(evidence), hop_count=len(hops))
