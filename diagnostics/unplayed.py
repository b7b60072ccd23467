"""Names the sandbox does not play: said as such, never blamed on a DNS provider.

The sandbox's DNS server answers REFUSED for a name outside its zones (RFC 1035: it is not
authoritative there and does not recurse). In live mode the same answer means a broken or
misconfigured name server; in sandbox mode it only means the world has no such name, and the
finding must say so instead of sending IT to a DNS provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from diagnostics.findings import Cause, Outcome, Status

__all__ = ["UNPLAYED_DETAIL", "refused", "unplayed_outcome"]

UNPLAYED_DETAIL: Final = "the sandbox does not play this name (its DNS server refused the query)"


def refused(text: str) -> bool:
    """A resolver error text that reports a REFUSED answer."""
    return "REFUSED" in text


def unplayed_outcome(outcome: Outcome, names: Sequence[str]) -> Outcome:
    """``outcome`` of a check that met names the sandbox does not play, said as such."""
    listed = ", ".join(dict.fromkeys(n.rstrip(".").lower() for n in names))
    detail = outcome.detail.rstrip()
    return Outcome(
        Status.ERROR,
        f"The sandbox does not play {listed}",
        f"{detail} The sandbox's DNS answers only for the domains and hosts of the account file "
        "it was built from, the platform's and the candidates'; the check could not run.".lstrip(),
        Cause.DNS_FAILURE,
        f"The sandbox does not play {listed}, so this run says nothing about it. Audit the "
        f"account file that names {listed} with --sandbox (the sandbox then builds a zone "
        "for it), or audit without --sandbox to ask the real DNS.",
    )
