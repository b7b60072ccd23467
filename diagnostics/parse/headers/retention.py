"""Header retention (``headers.retention``): did the retained headers, the MIME structure and
the body arrive as they were sent?

Headers are compared by meaning (addresses by addr-spec and display name, Date by instant,
msg-ids by token), bodies by the decoded content of every leaf part.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.headerregistry import AddressHeader, DateHeader
from email.message import Message
from typing import Any, Literal

from diagnostics.findings import Cause, Outcome, Status
from diagnostics.parse.headers.message import (
    MAX_DEPTH,
    MessageInput,
    and_list,
    as_message,
    clip,
    decoded_text,
    header_fields,
    squash,
    subparts,
)

RETAINED = (
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
)

DiffKind = Literal["missing", "changed", "added", "duplicated"]


_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to"})
_ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})
_MSG_ID = re.compile(r"<[^<>\s]*>")


def _key(name: str, text: str, parsed: object) -> tuple[object, ...]:
    """What a field means, for comparing: addresses, an instant, msg-id tokens, or text."""
    lname = name.lower()
    if lname in _ADDRESS_HEADERS and isinstance(parsed, AddressHeader) and parsed.addresses:
        return (
            "addresses",
            tuple((squash(a.display_name), a.username, a.domain.lower()) for a in parsed.addresses),
        )
    if lname == "date" and isinstance(parsed, DateHeader) and parsed.datetime is not None:
        when = parsed.datetime
        if when.tzinfo is None:  # -0000: "no zone information", read as UTC
            when = when.replace(tzinfo=dt.UTC)
        return ("instant", when)
    if lname in _ID_HEADERS:
        ids = tuple(_MSG_ID.findall(text))
        if ids:
            return ("ids", ids)
    return ("text", text)


@dataclass(frozen=True)
class HeaderDiff:
    """One retained header that did not arrive as it was sent."""

    name: str
    kind: DiffKind
    sent: str | None
    arrived: str | None

    def describe(self) -> str:
        """One line: the header, what happened, the values."""
        sent, arrived = clip(self.sent or ""), clip(self.arrived or "")
        if self.kind == "missing":
            return f"{self.name} missing (sent: {sent!r})"
        if self.kind == "added":
            return f"{self.name} added ({arrived!r})"
        if self.kind == "duplicated":
            return f"{self.name} duplicated ({arrived!r})"
        return f"{self.name} changed ({sent!r} -> {arrived!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "sent": self.sent, "arrived": self.arrived}


@dataclass(frozen=True)
class BodyDigest:
    """A message's MIME structure and one SHA-256 per leaf part of decoded content."""

    structure: str
    leaves: tuple[str, ...]

    @property
    def sha256(self) -> str:
        """One hash over every leaf's hash, in order."""
        return hashlib.sha256("\n".join(self.leaves).encode("ascii")).hexdigest()


def mime_structure(part: Message, _depth: int = 0) -> str:
    """The tree of content types, e.g. ``multipart/alternative(text/plain,text/html)``."""
    ctype = part.get_content_type()
    if not part.is_multipart():
        return ctype
    if _depth >= MAX_DEPTH:
        return f"{ctype}(…)"
    return f"{ctype}({','.join(mime_structure(p, _depth + 1) for p in subparts(part))})"


def _leaves(part: Message, _depth: int = 0) -> Iterator[Message]:
    if not part.is_multipart():
        yield part
    elif _depth < MAX_DEPTH:
        for child in subparts(part):
            yield from _leaves(child, _depth + 1)


def _leaf_content(part: Message) -> bytes:
    # Text is compared as text, so that a relay's 8bit-to-quoted-printable downgrade or a
    # change of charset is not a change of body.
    if part.get_content_maintype() == "text":
        return decoded_text(part).encode("utf-8", "surrogatepass")
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def body_digest(message: MessageInput) -> BodyDigest:
    """The MIME structure and the leaf hashes of ``message``."""
    msg = as_message(message)
    return BodyDigest(
        structure=mime_structure(msg),
        leaves=tuple(hashlib.sha256(_leaf_content(p)).hexdigest() for p in _leaves(msg)),
    )


@dataclass(frozen=True)
class Retention:
    """How the retained headers, the MIME structure and the body arrived.

    ``compared`` names the retained headers the sent message had.
    """

    diffs: tuple[HeaderDiff, ...]
    compared: tuple[str, ...]
    sent_body: BodyDigest
    arrived_body: BodyDigest

    @property
    def structure_changed(self) -> bool:
        return self.sent_body.structure != self.arrived_body.structure

    @property
    def body_changed(self) -> bool:
        return self.sent_body.sha256 != self.arrived_body.sha256

    @property
    def retained(self) -> bool:
        """True only when no header, the structure and the body differ."""
        return not self.diffs and not self.structure_changed and not self.body_changed

    def diff(self, name: str) -> HeaderDiff | None:
        """The difference of header ``name``, if any."""
        return next((d for d in self.diffs if d.name.lower() == name.lower()), None)

    def problems(self) -> list[str]:
        """Every difference, one line each."""
        lines = [d.describe() for d in self.diffs]
        if self.structure_changed:
            lines.append(
                f"MIME structure changed ({self.sent_body.structure} -> "
                f"{self.arrived_body.structure})"
            )
        if self.body_changed:
            lines.append("body changed")
        return lines

    def summary(self) -> str:
        """One line a support agent reads."""
        if self.retained:
            names = ", ".join(self.compared) or "no retained header"
            return f"Retained: {names}, the MIME structure and the body arrived unchanged."
        return "Not retained: " + "; ".join(self.problems()) + "."

    def title(self) -> str:
        """What the redirection did, by header, e.g. ``The redirection changed Subject and
        dropped References``."""
        verbs = {"missing": "dropped", "added": "added", "duplicated": "duplicated"}
        grouped: dict[str, list[str]] = {}
        for d in self.diffs:
            grouped.setdefault(verbs.get(d.kind, "changed"), []).append(d.name)
        if self.structure_changed:
            grouped.setdefault("changed", []).append("the MIME structure")
        if self.body_changed:
            grouped.setdefault("changed", []).append("the body")
        if not grouped:
            return "The redirection kept the message as it was sent"
        parts = [f"{verb} {and_list(names)}" for verb, names in grouped.items()]
        return "The redirection " + and_list(parts)

    def outcome(self, remediation: str = "") -> Outcome:
        """The ``headers.retention`` outcome."""
        if self.retained:
            return Outcome(Status.PASS, "Original headers and body retained", self.summary())
        return Outcome(
            Status.FAIL,
            self.title(),
            self.summary(),
            cause=Cause.UNKNOWN,
            remediation=remediation,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "retained": self.retained,
            "summary": self.summary(),
            "diffs": [d.to_dict() for d in self.diffs],
            "compared": list(self.compared),
            "sent_structure": self.sent_body.structure,
            "arrived_structure": self.arrived_body.structure,
            "structure_changed": self.structure_changed,
            "sent_body_sha256": self.sent_body.sha256,
            "arrived_body_sha256": self.arrived_body.sha256,
            "body_changed": self.body_changed,
        }


def _header_diff(
    name: str, sent: list[tuple[str, object]], arrived: list[tuple[str, object]]
) -> HeaderDiff | None:
    sent_text = " | ".join(t for t, _ in sent) if sent else None
    arrived_text = " | ".join(t for t, _ in arrived) if arrived else None
    if not sent and not arrived:
        return None
    if not arrived:
        return HeaderDiff(name, "missing", sent_text, None)
    if not sent:
        return HeaderDiff(name, "added", None, arrived_text)
    if len(arrived) > len(sent):
        return HeaderDiff(name, "duplicated", sent_text, arrived_text)
    if [_key(name, *f) for f in sent] != [_key(name, *f) for f in arrived]:
        return HeaderDiff(name, "changed", sent_text, arrived_text)
    return None


def compare_retention(sent: MessageInput, arrived: MessageInput) -> Retention:
    """Compare what was sent with what arrived: every retained header by meaning (unfolded,
    RFC 2047 decoded; addresses by addr-spec and display name, Date by instant, msg-ids by
    token), the MIME structure, and the decoded content of every leaf part."""
    sent_msg, arrived_msg = as_message(sent), as_message(arrived)
    diffs = []
    compared = []
    for name in RETAINED:
        sent_fields = header_fields(sent_msg, name)
        if sent_fields:
            compared.append(name)
        diff = _header_diff(name, sent_fields, header_fields(arrived_msg, name))
        if diff is not None:
            diffs.append(diff)
    return Retention(
        diffs=tuple(diffs),
        compared=tuple(compared),
        sent_body=body_digest(sent_msg),
        arrived_body=body_digest(arrived_msg),
    )
