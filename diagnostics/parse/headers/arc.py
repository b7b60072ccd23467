"""ARC (RFC 8617): the chain's instances as their headers state them, and what keeps it from
being complete. Structure only: no signature is verified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diagnostics.parse.headers.authres import AuthResult, parse_authentication_results_value
from diagnostics.parse.headers.message import (
    MessageInput,
    as_message,
    clip,
    squash,
)


@dataclass(frozen=True)
class ArcInstance:
    """The ARC headers of one instance ``i``: what the sealer claimed, never verified."""

    i: int
    cv: str | None
    seal_domain: str | None
    signature_domain: str | None
    authserv_id: str | None
    results: tuple[AuthResult, ...]
    seals: int
    signatures: int
    authentication_results: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "i": self.i,
            "cv": self.cv,
            "seal_domain": self.seal_domain,
            "signature_domain": self.signature_domain,
            "authserv_id": self.authserv_id,
            "results": [r.to_dict() for r in self.results],
        }


@dataclass(frozen=True)
class ArcChain:
    """The ARC chain as its headers state it (RFC 8617), instance 1 first.

    ``complete`` means structurally whole: instances 1..n each with exactly one ARC-Seal,
    ARC-Message-Signature and ARC-Authentication-Results, cv=none at i=1 and not at i>1.
    No signature is verified: a complete chain may still fail cryptographic validation.
    """

    instances: tuple[ArcInstance, ...]
    problems: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return bool(self.instances) and not self.problems

    @property
    def cv(self) -> str | None:
        """The chain validation state the last sealer claimed."""
        return self.instances[-1].cv if self.instances else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "instances": [i.to_dict() for i in self.instances],
            "complete": self.complete,
            "cv": self.cv,
            "problems": list(self.problems),
            "validated": False,
        }


def _tags(value: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in squash(value).split(";"):
        key, eq, tag_value = part.partition("=")
        if eq and key.strip():
            tags.setdefault(key.strip().lower(), tag_value.strip())
    return tags


_ARC_HEADERS = (
    ("ARC-Seal", "seal"),
    ("ARC-Message-Signature", "signature"),
    ("ARC-Authentication-Results", "results"),
)


def parse_arc(message: MessageInput) -> ArcChain:
    """The ARC instances of ``message`` and what keeps the chain from being complete.

    Structure only: no signature (b=, bh=) is verified cryptographically.
    """
    msg = as_message(message)
    found: dict[int, dict[str, list[str]]] = {}
    problems: list[str] = []
    for name, kind in _ARC_HEADERS:
        for key, raw in msg.raw_items():
            if key.lower() != name.lower():
                continue
            value = squash(str(raw))
            i_text = _tags(value).get("i", "") if kind != "results" else ""
            if kind == "results":
                first, _, _ = value.partition(";")
                i_key, _, i_text = first.partition("=")
                i_text = i_text.strip() if i_key.strip().lower() == "i" else ""
            if not i_text.isdigit() or not 1 <= int(i_text) <= 50:
                problems.append(f"{name} with an invalid instance tag i={clip(i_text, 20)!r}")
                continue
            found.setdefault(int(i_text), {}).setdefault(kind, []).append(value)
    instances = []
    last = max(found, default=0)
    for i in range(1, last + 1):
        parts = found.get(i)
        if parts is None:
            problems.append(f"instance i={i} is missing")
            continue
        for name, kind in _ARC_HEADERS:
            count = len(parts.get(kind, []))
            if count != 1:
                problems.append(f"instance i={i} has {count} {name} header(s)")
        seal = _tags(parts["seal"][0]) if parts.get("seal") else {}
        signature = _tags(parts["signature"][0]) if parts.get("signature") else {}
        cv = seal.get("cv", "").lower() or None
        if parts.get("seal") and i == 1 and cv != "none":
            problems.append(f"ARC-Seal i=1 must say cv=none, says cv={cv}")
        if parts.get("seal") and i > 1 and cv in (None, "none"):
            problems.append(f"ARC-Seal i={i} must say cv=pass or cv=fail, says cv={cv}")
        results: tuple[AuthResult, ...] = ()
        if parts.get("results"):
            results = parse_authentication_results_value(parts["results"][0].partition(";")[2])
        instances.append(
            ArcInstance(
                i=i,
                cv=cv,
                seal_domain=seal.get("d") or None,
                signature_domain=signature.get("d") or None,
                authserv_id=results[0].authserv_id if results else None,
                results=results,
                seals=len(parts.get("seal", [])),
                signatures=len(parts.get("signature", [])),
                authentication_results=len(parts.get("results", [])),
            )
        )
    return ArcChain(instances=tuple(instances), problems=tuple(problems))
