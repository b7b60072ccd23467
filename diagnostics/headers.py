"""What the headers of a redirected message tell: whether the original headers and body were
retained, how the company server passed the message on (redirect or one of the forwarding
faults), the Received chain with its delays, mail loops, Authentication-Results and ARC, the
server family that did it, and what to change.

Pure functions of bytes (or parsed messages): no network, no clock. Everything here reads
text written by strangers; nothing raises for a malformed header, it is reported or skipped.
:func:`printable` makes such text harmless for a terminal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.errors
import email.header
import email.policy
import email.utils
import hashlib
import html
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from email.headerregistry import AddressHeader, DateHeader
from email.message import EmailMessage, Message
from email.parser import BytesParser
from functools import cache
from types import MappingProxyType
from typing import Any, Literal, get_args

from diagnostics.datafiles import load_data_file
from diagnostics.findings import Cause, Outcome, Status

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

# Gravest first: a primary style is the first of these that applies. The two forward styles
# exclude each other and "redirect"; the four modifications can come with a redirect.
Style = Literal[
    "forward_inline",
    "forward_attachment",
    "from_rewritten",
    "headers_stripped",
    "subject_tagged",
    "footer_appended",
    "redirect",
]
STYLES: tuple[Style, ...] = get_args(Style)

Family = Literal["exchange", "google", "postfix", "exim", "sendmail"]
FAMILIES: tuple[Family, ...] = get_args(Family)

SUSPICIOUS_HOPS = 25
"""More Received headers than this suggest a loop (Postfix's hopcount_limit is 50, Exim's
received_headers_max 30)."""

MessageInput = bytes | Message

_PARSER = BytesParser(policy=email.policy.default)
_MAX_DEPTH = 40


def parse_message(data: bytes) -> EmailMessage:
    """``data`` parsed with ``email.policy.default``."""
    message = _PARSER.parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def _message(message: MessageInput) -> Message:
    return parse_message(message) if isinstance(message, bytes) else message


def _squash(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """``text`` safe for a terminal: line breaks and tabs as spaces, control characters
    (including ESC of terminal escape sequences) and bidi overrides removed."""
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in "\t\n\r\v\f" or category in ("Zl", "Zp"):
            out.append(" ")
        elif category == "Cs":
            out.append("\ufffd")
        elif category != "Cc" and ch not in _BIDI_CONTROLS:
            out.append(ch)
    return "".join(out)


# -- header fields -----------------------------------------------------------------------------


def _decode_raw(raw: str) -> str:
    text = re.sub(r"\r?\n(?=[ \t])", "", raw)
    with contextlib.suppress(email.errors.HeaderParseError, UnicodeError, LookupError, ValueError):
        text = str(email.header.make_header(email.header.decode_header(text)))
    return _squash(text)


def _fields(message: Message, name: str) -> list[tuple[str, object]]:
    """Each field called ``name``, top first: its decoded, unfolded text and its parsed header
    (None when the header parser gave up)."""
    wanted = name.lower()
    fields: list[tuple[str, object]] = []
    for key, raw in message.raw_items():
        if key.lower() != wanted:
            continue
        parsed: object
        try:
            parsed = message.policy.header_fetch_parse(key, raw)
        except Exception:
            # The stdlib header parser has raised IndexError, AttributeError and more on
            # hostile input; such a field is compared as text.
            parsed = None
        text = _squash(str(parsed)) if parsed is not None else _decode_raw(str(raw))
        fields.append((text, parsed))
    return fields


def _text(message: Message, name: str) -> str | None:
    fields = _fields(message, name)
    return fields[0][0] if fields else None


def _addresses(message: Message, name: str) -> list[tuple[str, str]]:
    """The (display name, addr-spec) pairs of every field ``name``; addr-specs lower-cased."""
    found: list[tuple[str, str]] = []
    for text, parsed in _fields(message, name):
        if isinstance(parsed, AddressHeader) and parsed.addresses:
            found += [(_squash(a.display_name), a.addr_spec.lower()) for a in parsed.addresses]
        else:
            _, addr = email.utils.parseaddr(text)
            if addr:
                found.append(("", addr.lower()))
    return found


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def _in_domains(host: str | None, domains: Iterable[str]) -> bool:
    if not host:
        return False
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains if d)


_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to"})
_ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})
_MSG_ID = re.compile(r"<[^<>\s]*>")


def _key(name: str, text: str, parsed: object) -> tuple[object, ...]:
    """What a field means, for comparing: addresses, an instant, msg-id tokens, or text."""
    lname = name.lower()
    if lname in _ADDRESS_HEADERS and isinstance(parsed, AddressHeader) and parsed.addresses:
        return (
            "addresses",
            tuple(
                (_squash(a.display_name), a.username, a.domain.lower()) for a in parsed.addresses
            ),
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


# -- retention ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderDiff:
    """One retained header that did not arrive as it was sent."""

    name: str
    kind: DiffKind
    sent: str | None
    arrived: str | None

    def describe(self) -> str:
        """One line: the header, what happened, the values."""
        sent, arrived = _clip(self.sent or ""), _clip(self.arrived or "")
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


def _payload(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def mime_structure(part: Message, _depth: int = 0) -> str:
    """The tree of content types, e.g. ``multipart/alternative(text/plain,text/html)``."""
    ctype = part.get_content_type()
    if not part.is_multipart():
        return ctype
    if _depth >= _MAX_DEPTH:
        return f"{ctype}(…)"
    return f"{ctype}({','.join(mime_structure(p, _depth + 1) for p in _payload(part))})"


def _leaves(part: Message, _depth: int = 0) -> Iterator[Message]:
    if not part.is_multipart():
        yield part
    elif _depth < _MAX_DEPTH:
        for child in _payload(part):
            yield from _leaves(child, _depth + 1)


def _decoded_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    charset = part.get_content_charset() or "us-ascii"
    try:
        text = data.decode(charset, "replace")
    except (LookupError, UnicodeError, ValueError):
        text = data.decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _leaf_content(part: Message) -> bytes:
    # Text is compared as text, so that a relay's 8bit-to-quoted-printable downgrade or a
    # change of charset is not a change of body.
    if part.get_content_maintype() == "text":
        return _decoded_text(part).encode("utf-8", "surrogatepass")
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def body_digest(message: MessageInput) -> BodyDigest:
    """The MIME structure and the leaf hashes of ``message``."""
    msg = _message(message)
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
        parts = [f"{verb} {_and_list(names)}" for verb, names in grouped.items()]
        return "The redirection " + _and_list(parts)

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


def _and_list(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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
    sent_msg, arrived_msg = _message(sent), _message(arrived)
    diffs = []
    compared = []
    for name in RETAINED:
        sent_fields = _fields(sent_msg, name)
        if sent_fields:
            compared.append(name)
        diff = _header_diff(name, sent_fields, _fields(arrived_msg, name))
        if diff is not None:
            diffs.append(diff)
    return Retention(
        diffs=tuple(diffs),
        compared=tuple(compared),
        sent_body=body_digest(sent_msg),
        arrived_body=body_digest(arrived_msg),
    )


# -- Received chain ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    """One Received header, numbered from the oldest (1).

    ``delay_s`` is the time since the previous hop; negative delays are kept (clock skew).
    ``family`` is the server family that wrote the header, when its text says so.
    """

    index: int
    from_host: str | None
    from_address: str | None
    by_host: str | None
    with_protocol: str | None
    id: str | None
    for_address: str | None
    timestamp: dt.datetime | None
    delay_s: float | None
    family: Family | None
    raw: str

    @property
    def clock_skew(self) -> bool:
        """The hop claims to be earlier than the previous one."""
        return self.delay_s is not None and self.delay_s < 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "from_host": self.from_host,
            "from_address": self.from_address,
            "by_host": self.by_host,
            "with_protocol": self.with_protocol,
            "id": self.id,
            "for_address": self.for_address,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "delay_s": self.delay_s,
            "clock_skew": self.clock_skew,
            "family": self.family,
            "raw": self.raw,
        }


_CLAUSES = frozenset({"from", "by", "via", "with", "id", "for"})
_TRAILING_DATE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),?\s+)?\d{1,2}\s+[A-Za-z]{3}\s+\d{2,4}\s+"
    r"\d{1,2}:\d{2}(?::\d{2})?(?:\s+(?:[+-]\d{4}|[A-Za-z]{1,5}))?(?:\s*\([^()]*\))?\s*$"
)
_BRACKETED_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)(?:%[\w.]+)?\]")
_SENDMAIL_VERSION = re.compile(r"\(\d+\.\d+\.\d+(?:\.\w+)?/\d+\.\d+\.\d+(?:\.\w+)?[^)]*\)")


def _tokens(text: str) -> list[str]:
    """Words, comments (balanced parentheses), <angle addresses> and "quoted strings"."""
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        j = i
        if ch == "(":
            depth = 0
            while j < n:
                if text[j] == "\\":
                    j += 2
                    continue
                if text[j] == "(":
                    depth += 1
                elif text[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            j += 1
        elif ch == "<":
            end = text.find(">", i)
            j = n if end < 0 else end + 1
        elif ch == '"':
            j += 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
        else:
            while j < n and not text[j].isspace() and text[j] not in '(<"':
                j += 1
        tokens.append(text[i:j])
        i = j
    return tokens


def _is_comment(token: str) -> bool:
    return token.startswith("(")


def _ip(candidate: str) -> str | None:
    candidate = candidate.strip("[]").split("%", 1)[0]
    if candidate.lower().startswith("ipv6:"):
        candidate = candidate[5:]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def _from_address(tokens: list[str]) -> str | None:
    text = " ".join(tokens)
    for match in _BRACKETED_IP.finditer(text):
        if (address := _ip(match.group(1))) is not None:
            return address
    for token in tokens:
        if _is_comment(token):
            for word in re.split(r"[\s(),;=]+", token):
                if word and (address := _ip(word)) is not None:
                    return address
    return None


def _first_word(tokens: list[str]) -> str | None:
    return next((t for t in tokens if not _is_comment(t)), None)


def _instant(text: str) -> dt.datetime | None:
    text = re.sub(r"\s*\([^()]*\)\s*$", "", text.strip())
    if not text:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _hop_family(by_host: str | None, with_protocol: str | None, server_text: str) -> Family | None:
    host = (by_host or "").lower().rstrip(".")
    text = server_text.lower()
    protocol = (with_protocol or "").lower()
    if (
        "microsoft smtp server" in text
        or protocol == "mapi"
        or host.endswith((".outlook.com", ".exchangelabs.com", ".outlook.office365.com"))
    ):
        return "exchange"
    if host.endswith(".google.com") or (host.startswith("2002:") and protocol.startswith("smtp")):
        return "google"
    if "(postfix" in text:
        return "postfix"
    if "(exim" in text:
        return "exim"
    if "sendmail" in text or _SENDMAIL_VERSION.search(server_text):
        return "sendmail"
    return None


def parse_hop(value: str, *, index: int = 1) -> Hop:
    """One Received header's value (RFC 5321 section 4.4 and what servers really write)."""
    raw = _squash(value)
    head, semicolon, tail = raw.rpartition(";")
    if semicolon:
        clause_text, date_text = head, tail
    else:
        match = _TRAILING_DATE.search(raw)
        clause_text, date_text = (raw[: match.start()], match.group(0)) if match else (raw, "")
    clauses: dict[str, list[str]] = {}
    current: str | None = None
    for token in _tokens(clause_text):
        keyword = token.lower()
        if keyword in _CLAUSES and keyword not in clauses:
            current = keyword
            clauses[keyword] = []
        elif current is not None:
            clauses[current].append(token)
    with_tokens = clauses.get("with", [])
    words = []
    for token in with_tokens:
        if _is_comment(token):
            break
        words.append(token)
    with_protocol = " ".join(words) or None
    ident = _first_word(clauses.get("id", []))
    for_word = _first_word(clauses.get("for", []))
    for_address = for_word.strip("<>").rstrip(";") or None if for_word else None
    by_host = _first_word(clauses.get("by", []))
    server_text = " ".join(
        " ".join(tokens) for keyword, tokens in clauses.items() if keyword != "from"
    )
    return Hop(
        index=index,
        from_host=_first_word(clauses.get("from", [])),
        from_address=_from_address(clauses.get("from", [])),
        by_host=by_host,
        with_protocol=with_protocol,
        id=ident.rstrip(";") if ident else None,
        for_address=for_address,
        timestamp=_instant(date_text),
        delay_s=None,
        family=_hop_family(by_host, with_protocol, server_text),
        raw=raw,
    )


def parse_received(message: MessageInput) -> tuple[Hop, ...]:
    """The Received chain, oldest hop first, with the delay since the previous hop."""
    msg = _message(message)
    values = [str(raw) for key, raw in msg.raw_items() if key.lower() == "received"]
    hops: list[Hop] = []
    for index, value in enumerate(reversed(values), start=1):
        hop = parse_hop(value, index=index)
        previous = hops[-1].timestamp if hops else None
        if previous is not None and hop.timestamp is not None:
            hop = replace(hop, delay_s=(hop.timestamp - previous).total_seconds())
        hops.append(hop)
    return tuple(hops)


def total_delay(hops: Sequence[Hop]) -> float | None:
    """Seconds from the first to the last hop that carry a time; None with fewer than two."""
    times = [h.timestamp for h in hops if h.timestamp is not None]
    return (times[-1] - times[0]).total_seconds() if len(times) >= 2 else None


# -- loops -------------------------------------------------------------------------------------


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


def _joined(numbers: Sequence[int]) -> str:
    items = [str(n) for n in numbers]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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
    msg = _message(message)
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
                f"(hops {_joined(indices)})"
            )
    for name in ("Delivered-To", "X-Original-To"):
        counts: dict[str, int] = {}
        for _, addr in _addresses(msg, name):
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
                f"{address} became the recipient again after another one (hops {_joined(visits)})"
            )
    if len(hops) > SUSPICIOUS_HOPS:
        evidence.append(
            f"{len(hops)} Received headers: more than {SUSPICIOUS_HOPS} hops suggests a loop "
            "(Postfix gives up at 50, Exim at 30)"
        )
    return LoopVerdict(looped=bool(evidence), evidence=tuple(evidence), hop_count=len(hops))


# -- Authentication-Results and ARC ------------------------------------------------------------


@dataclass(frozen=True)
class AuthResult:
    """One result of an Authentication-Results header (RFC 8601): ``dkim=pass header.d=...``.

    ``authserv_id`` is None when the header has none (Microsoft 365 omits it).
    """

    authserv_id: str | None
    method: str
    result: str
    reason: str | None
    properties: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        """The property ``name`` (``smtp.mailfrom``, ``header.d``, ...), if present."""
        return next((v for k, v in self.properties if k == name.lower()), None)

    def describe(self) -> str:
        """``method=result``, the reason and the properties, on one line."""
        props = " ".join(f"{k}={v}" for k, v in self.properties)
        reason = f" reason={self.reason!r}" if self.reason else ""
        return f"{self.method}={self.result}{reason}" + (f" ({props})" if props else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "authserv_id": self.authserv_id,
            "method": self.method,
            "result": self.result,
            "reason": self.reason,
            "properties": dict(self.properties),
        }


def _strip_comments(text: str) -> str:
    out: list[str] = []
    depth, quoted, i = 0, False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and (quoted or depth):
            if not depth:
                out.append(text[i : i + 2])
            i += 2
            continue
        if quoted:
            out.append(ch)
            quoted = ch != '"'
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if not depth:
                out.append(" ")
        elif not depth:
            quoted = ch == '"'
            out.append(ch)
        i += 1
    return "".join(out)


def _split_unquoted(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


_METHOD = re.compile(r"^([A-Za-z0-9][\w.-]*)\s*(?:/\s*\d+)?\s*=\s*([\w-]+)")
_PROPERTY = re.compile(r'([A-Za-z0-9][\w.-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;]+)')


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_authentication_results_value(value: str) -> tuple[AuthResult, ...]:
    """The results of one Authentication-Results value (comments dropped)."""
    parts = [p.strip() for p in _split_unquoted(_strip_comments(_squash(value)), ";")]
    if not parts or not parts[0]:
        return ()
    authserv_id: str | None
    if _METHOD.match(parts[0]):
        authserv_id, resinfos = None, parts
    else:
        authserv_id, resinfos = parts[0].split()[0], parts[1:]
    results = []
    for part in resinfos:
        match = _METHOD.match(part)
        if match is None:
            continue
        reason, properties = None, []
        for key, raw in _PROPERTY.findall(part[match.end() :]):
            if key.lower() == "reason":
                reason = _unquote(raw)
            else:
                properties.append((key.lower(), _unquote(raw)))
        results.append(
            AuthResult(
                authserv_id=authserv_id,
                method=match.group(1).lower(),
                result=match.group(2).lower(),
                reason=reason,
                properties=tuple(properties),
            )
        )
    return tuple(results)


def parse_authentication_results(message: MessageInput) -> tuple[AuthResult, ...]:
    """Every result of every Authentication-Results header, topmost (newest) header first."""
    msg = _message(message)
    return tuple(
        result
        for key, raw in msg.raw_items()
        if key.lower() == "authentication-results"
        for result in parse_authentication_results_value(str(raw))
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
    for part in _squash(value).split(";"):
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
    msg = _message(message)
    found: dict[int, dict[str, list[str]]] = {}
    problems: list[str] = []
    for name, kind in _ARC_HEADERS:
        for key, raw in msg.raw_items():
            if key.lower() != name.lower():
                continue
            value = _squash(str(raw))
            i_text = _tags(value).get("i", "") if kind != "results" else ""
            if kind == "results":
                first, _, _ = value.partition(";")
                i_key, _, i_text = first.partition("=")
                i_text = i_text.strip() if i_key.strip().lower() == "i" else ""
            if not i_text.isdigit() or not 1 <= int(i_text) <= 50:
                problems.append(f"{name} with an invalid instance tag i={_clip(i_text, 20)!r}")
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


# -- server family -----------------------------------------------------------------------------


def _final_domain(message: Message, hops: Sequence[Hop]) -> str | None:
    for name in ("Delivered-To", "X-Original-To"):
        delivered = _addresses(message, name)
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
    msg = _message(message)
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
    senders = {_domain(a) for name in ("From", "X-Original-From") for _, a in _addresses(msg, name)}
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


# -- forwarding style --------------------------------------------------------------------------


@dataclass(frozen=True)
class StyleVerdict:
    """How the message was passed on: styles gravest first, and the evidence for each.

    No style at all means the message shows no sign of having been passed on.
    """

    styles: tuple[Style, ...]
    evidence: tuple[str, ...]
    with_original: bool

    @property
    def primary(self) -> Style | None:
        return self.styles[0] if self.styles else None

    @property
    def faults(self) -> tuple[Style, ...]:
        """Every style but ``redirect``."""
        return tuple(s for s in self.styles if s != "redirect")

    def outcome(
        self,
        family: str | None = None,
        *,
        custom_address: str | None = None,
        inbound_address: str | None = None,
    ) -> Outcome:
        """The ``headers.forwarding_style`` outcome, with the fix for ``family`` naming the
        account's addresses."""
        if not self.styles:
            return Outcome(Status.PASS, "No sign of forwarding", "The message arrived directly.")
        if not self.faults:
            return Outcome(
                Status.PASS, "Redirected with the original headers", "; ".join(self.evidence)
            )
        primary = self.faults[0]
        grave = primary in ("forward_inline", "forward_attachment", "from_rewritten")
        grave = grave or primary == "headers_stripped"
        return Outcome(
            Status.FAIL if grave else Status.WARN,
            _STYLE_TITLES[primary],
            "; ".join(self.evidence),
            cause=Cause.UNKNOWN if grave else None,
            remediation=remediation_for(
                primary, family, custom_address=custom_address, inbound_address=inbound_address
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "styles": list(self.styles),
            "primary": self.primary,
            "evidence": list(self.evidence),
            "with_original": self.with_original,
        }


_STYLE_TITLES: dict[str, str] = {
    "forward_inline": "Forwarded inline instead of redirected",
    "forward_attachment": "Forwarded as an attachment instead of redirected",
    "from_rewritten": "From rewritten on the way",
    "headers_stripped": "Headers stripped on the way",
    "subject_tagged": "Subject tagged on the way",
    "footer_appended": "Footer added to the body on the way",
    "redirect": "Redirected",
}

_SUBJECT_TAG = re.compile(
    r"^\s*(\[(?:EXTERNAL(?: SENDER| EMAIL| MAIL)?|EXT|EXTERN|EXTERNE|EXTERNO|CAUTION|WARNING|"
    r"SPAM|SPAM\?|SUSPECTED SPAM|POSSIBLE SPAM|\*\*\*SPAM\*\*\*)\]|\*{1,3}(?:EXTERNAL|SPAM)\*{1,3}"
    r"|(?:EXTERNAL|EXTERN|EXT)\s*:)\s*",
    re.IGNORECASE,
)
_FORWARD_PREFIX = re.compile(r"^\s*(Fwd|Fw|WG|TR|RV)\s*(?:\[\d+\])?\s*:\s*", re.IGNORECASE)
_REPLY_PREFIX = re.compile(r"^\s*(Re|AW|SV|Antw|Antwort|RIF|Réf)\s*(?:\[\d+\])?\s*:", re.IGNORECASE)
_FORWARD_SEPARATORS = (
    (
        re.compile(
            r"^[\s>]*-{5,}\s*(?:Forwarded message|Forwarded Message|Weitergeleitete Nachricht|"
            r"Message transféré)\s*-{5,}",
            re.MULTILINE | re.IGNORECASE,
        ),
        "a forwarded-message separator (Gmail, Thunderbird)",
    ),
    (
        re.compile(
            r"^[\s>]*(?:Begin forwarded message|Anfang der weitergeleiteten Nachricht)\s*:", re.M
        ),
        "Apple Mail's 'Begin forwarded message:'",
    ),
)
_ORIGINAL_MESSAGE = re.compile(
    r"^[\s>]*-{3,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original)"
    r"\s*-{3,}",
    re.MULTILINE | re.IGNORECASE,
)
_BLOCK_FROM = re.compile(r"^[\s>*]*(From|Von|De)\s?:\*?\s*\S", re.IGNORECASE)
_BLOCK_SENT = re.compile(r"^[\s>*]*(Sent|Gesendet|Envoyé|Enviado)\s?:", re.IGNORECASE)
_BLOCK_SUBJECT = re.compile(r"^[\s>*]*(Subject|Betreff|Objet|Asunto)\s?:", re.IGNORECASE)
_DISCLAIMERS = (
    "this email originated from outside",
    "this message originated from outside",
    "this e-mail originated from outside",
    "caution: external",
    "caution: this email originated",
    "external email: do not click",
    "diese e-mail stammt von außerhalb",
    "diese nachricht stammt von außerhalb",
    "achtung: externe e-mail",
)
_VIA = re.compile(r"^(?P<name>.*?)\s+via\s+(?P<via>\S.*)$", re.IGNORECASE)
_SRS = re.compile(r"(?:^|[<+])SRS[01][=+-]|\+SRS=", re.IGNORECASE)
_GMAIL_CAF = re.compile(r"\+caf_=", re.IGNORECASE)


def _html_text(markup: str) -> str:
    markup = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", " ", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</(?:p|div|tr|li|h\d)\s*>", "\n", markup)
    return html.unescape(re.sub(r"<[^>]*>", "", markup))


def _text_parts(part: Message, _depth: int = 0) -> Iterator[Message]:
    """The message's own text parts: not inside an attached message, not attachments."""
    if part.get_content_type() == "message/rfc822" and _depth:
        return
    if part.is_multipart():
        if _depth < _MAX_DEPTH:
            for child in _payload(part):
                yield from _text_parts(child, _depth + 1)
    elif part.get_content_maintype() == "text" and part.get_content_disposition() != "attachment":
        yield part


def body_text(message: MessageInput) -> str:
    """The message's own body as text: its text/plain parts, else its HTML without markup."""
    msg = _message(message)
    parts = list(_text_parts(msg))
    plain = [_decoded_text(p) for p in parts if p.get_content_subtype() == "plain"]
    if plain:
        return "\n".join(plain)
    return "\n".join(
        _html_text(_decoded_text(p)) for p in parts if p.get_content_subtype() == "html"
    )


def _attached(message: Message) -> list[Message]:
    """The message/rfc822 parts of ``message`` (not nested inside those)."""
    found: list[Message] = []

    def visit(part: Message, depth: int) -> None:
        if part.get_content_type() == "message/rfc822" and depth:
            found.append(part)
        elif part.is_multipart() and depth < _MAX_DEPTH:
            for child in _payload(part):
                visit(child, depth + 1)

    visit(message, 0)
    return found


def _outlook_block(text: str) -> str | None:
    lines = text.splitlines()
    for n, line in enumerate(lines):
        first = _BLOCK_FROM.match(line)
        if first is None:
            continue
        window = lines[n + 1 : n + 6]
        sent = next((m for m in map(_BLOCK_SENT.match, window) if m), None)
        subject = next((m for m in map(_BLOCK_SUBJECT.match, window) if m), None)
        if sent and subject:
            return f"{first.group(1)}:/{sent.group(1)}:/…/{subject.group(1)}:"
    return None


def _untagged(subject: str) -> str:
    """``subject`` without a leading tag such as "[EXTERNAL]"."""
    tag = _SUBJECT_TAG.match(subject)
    return subject[tag.end() :] if tag else subject


def _header_recipients(message: Message) -> set[str]:
    return {a for name in ("To", "Cc") for _, a in _addresses(message, name)}


def _redirect_signs(message: Message, hops: Sequence[Hop]) -> list[str]:
    """Evidence that the message was passed on as it was (each sign of a redirect)."""
    signs: list[str] = []
    keys = {k.lower(): k for k in message.keys()}
    resent = sorted({keys[k] for k in keys if k.startswith("resent-")})
    if resent:
        signs.append(f"{', '.join(resent)}: re-sent by a mail client with the headers kept")
    for name in ("X-Forwarded-To", "X-Forwarded-For"):
        value = _text(message, name)
        if value:
            signs.append(f"{name}: {value} (Gmail automatic forwarding keeps the headers)")
    if _text(message, "X-MS-Exchange-Organization-AutoForwarded"):
        signs.append(
            "X-MS-Exchange-Organization-AutoForwarded: Exchange forwarded it automatically"
        )
    return_path = _text(message, "Return-Path") or ""
    if _SRS.search(return_path):
        signs.append(
            f"Return-Path {return_path} is SRS-rewritten: a redirect that rewrote the envelope "
            "sender (fine)"
        )
    elif _GMAIL_CAF.search(return_path):
        signs.append(
            f"Return-Path {return_path} is Gmail's forwarding envelope: a redirect that rewrote "
            "the envelope sender (fine)"
        )
    named = _header_recipients(message)
    changed = None
    for n, hop in enumerate(hops):
        if hop.for_address and hop.for_address.lower() in named:
            later = next(
                (h for h in hops[n + 1 :] if h.for_address and h.for_address.lower() not in named),
                None,
            )
            if later is not None:
                changed = (hop, later)
                break
    if changed is not None:
        before, after = changed
        signs.append(
            f"the envelope recipient changed from {before.for_address} (hop {before.index}) to "
            f"{after.for_address} (hop {after.index}) while To/Cc still name "
            f"{before.for_address}"
        )
    elif named:
        for name in ("Delivered-To", "X-Original-To"):
            delivered = _addresses(message, name)
            if delivered and delivered[0][1] not in named:
                signs.append(
                    f"{name}: {delivered[0][1]}, which To/Cc do not name: the envelope was "
                    "redirected, the headers kept"
                )
                break
    return signs


def _without_original(message: Message, hops: Sequence[Hop]) -> tuple[list[tuple[str, str]], bool]:
    """The signs of styles in ``message`` alone, and whether it was passed on (redirected,
    with or without modifications) rather than re-sent as a forward."""
    signs: list[tuple[str, str]] = []
    subject = _text(message, "Subject") or ""
    tag = _SUBJECT_TAG.match(subject)
    rest = _untagged(subject)
    if tag:
        signs.append(("subject_tagged", f"the Subject starts with the tag {tag.group(1)!r}"))
    prefix = _FORWARD_PREFIX.match(rest)
    text = body_text(message)
    attached = _attached(message)
    if attached:
        inner = attached[0].get_payload()
        inner_msg = inner[0] if isinstance(inner, list) and inner else None
        described = ""
        if isinstance(inner_msg, Message):
            inner_id = _text(inner_msg, "Message-ID")
            described = f" (Message-ID {inner_id})" if inner_id else ""
        signs.append(("forward_attachment", f"a message/rfc822 part carries a message{described}"))
    forward_style = "forward_attachment" if attached else "forward_inline"
    if prefix:
        signs.append((forward_style, f"the Subject starts with {prefix.group(0).strip()!r}"))
    for pattern, description in _FORWARD_SEPARATORS:
        if not attached and pattern.search(text):
            signs.append(("forward_inline", f"the body quotes the original after {description}"))
    if prefix and not attached:
        if _ORIGINAL_MESSAGE.search(text):
            signs.append(
                (
                    "forward_inline",
                    "the body quotes the original after '-----Original Message-----'",
                )
            )
        block = _outlook_block(text)
        if block:
            signs.append(
                (
                    "forward_inline",
                    f"the body quotes the original in an Outlook header block ({block})",
                )
            )
    forwarded = any(style.startswith("forward_") for style, _ in signs)
    if not forwarded:
        from_addresses = _addresses(message, "From")
        name, addr = from_addresses[0] if from_addresses else ("", "")
        original_from = _addresses(message, "X-Original-From")
        if original_from and original_from[0][1] != addr:
            signs.append(
                (
                    "from_rewritten",
                    f"X-Original-From {original_from[0][1]} differs from From {addr}",
                )
            )
        via = _VIA.match(name)
        listed = any(_text(message, h) for h in ("X-Original-Sender", "List-Id", "Mailing-List"))
        if via and ("@" in via.group("via") or original_from or listed):
            signs.append(("from_rewritten", f"the From display name {name!r} says 'via'"))
        for header in ("Message-ID", "Date"):
            if _text(message, header) is None:
                signs.append(("headers_stripped", f"the message has no {header}"))
        if _REPLY_PREFIX.match(rest) and not (
            _text(message, "In-Reply-To") or _text(message, "References")
        ):
            signs.append(
                (
                    "headers_stripped",
                    f"the Subject {_clip(subject, 60)!r} is a reply but In-Reply-To and References "
                    "are missing",
                )
            )
    lowered = _squash(text).lower()
    disclaimer = next((d for d in _DISCLAIMERS if d in lowered), None)
    if disclaimer:
        signs.append(("footer_appended", f"the body carries the disclaimer {disclaimer!r}"))
    redirect_signs = [] if forwarded else _redirect_signs(message, hops)
    signs += [("redirect", s) for s in redirect_signs]
    return signs, bool(redirect_signs) or (not forwarded and bool(signs))


def _with_original(sent: Message, arrived: Message, hops: Sequence[Hop]) -> list[tuple[str, str]]:
    """The styles that the differences between ``sent`` and ``arrived`` prove."""
    retention = compare_retention(sent, arrived)
    signs: list[tuple[str, str]] = []
    sent_id = _text(sent, "Message-ID")
    if _attached(arrived) and not _attached(sent):
        inner_ids = []
        for part in _attached(arrived):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                inner_ids.append(_text(inner[0], "Message-ID"))
        which = "the original" if sent_id and sent_id in inner_ids else "a message"
        signs.append(("forward_attachment", f"{which} arrived attached as message/rfc822"))
        return signs
    id_diff = retention.diff("Message-ID")
    from_diff = retention.diff("From")
    text = body_text(arrived)
    quoted = any(p.search(text) for p, _ in _FORWARD_SEPARATORS) or _outlook_block(text)
    prefix = _FORWARD_PREFIX.match(_untagged(_text(arrived, "Subject") or ""))
    if (
        id_diff is not None
        and id_diff.kind in ("missing", "changed")
        and (from_diff is not None or quoted or prefix)
    ):
        signs.append(
            (
                "forward_inline",
                f"a new message: Message-ID {sent_id} became {_text(arrived, 'Message-ID')}"
                + (f", From {from_diff.sent} became {from_diff.arrived}" if from_diff else ""),
            )
        )
        return signs
    if from_diff is not None and from_diff.kind == "changed":
        signs.append(("from_rewritten", f"From {from_diff.sent} became {from_diff.arrived}"))
    missing = [d.name for d in retention.diffs if d.kind == "missing"]
    if missing:
        signs.append(("headers_stripped", f"missing on arrival: {', '.join(missing)}"))
    tagged = subject_tag(retention.diff("Subject"))
    if tagged is not None:
        tag, position = tagged
        placed = "put in front of" if position == "prefix" else "appended to"
        signs.append(("subject_tagged", f"{tag!r} was {placed} the Subject"))
    sent_text, arrived_text = body_text(sent).strip(), text.strip()
    if sent_text and arrived_text != sent_text and sent_text in arrived_text:
        where = arrived_text.find(sent_text)
        added = (arrived_text[:where] + " " + arrived_text[where + len(sent_text) :]).strip()
        place = (
            "at the end"
            if where == 0
            else "at the start"
            if arrived_text.endswith(sent_text)
            else "around it"
        )
        signs.append(
            ("footer_appended", f"the body text grew {place}: {_clip(_squash(added), 80)!r}")
        )
    elif retention.structure_changed and set(retention.sent_body.leaves) < set(
        retention.arrived_body.leaves
    ):
        signs.append(("footer_appended", "a body part was added"))
    if sent_id and id_diff is None:
        signs.append(
            ("redirect", f"Message-ID {sent_id} kept: the message was passed on, not re-sent")
        )
    signs += [("redirect", s) for s in _redirect_signs(arrived, hops)]
    if not any(style == "redirect" for style, _ in signs):
        signs.append(("redirect", "the message was passed on, not re-sent"))
    return signs


def subject_tag(diff: HeaderDiff | None) -> tuple[str, str] | None:
    """The tag a server put into a Subject, and where (``prefix`` or ``suffix``), from the
    Subject's difference; None when the Subject did not change that way."""
    if diff is None or diff.kind != "changed":
        return None
    before, after = diff.sent or "", diff.arrived or ""
    if not before or after == before:
        return None
    if after.endswith(before):
        return after[: -len(before)].strip(), "prefix"
    if after.startswith(before):
        return after[len(before) :].strip(), "suffix"
    return None


# What each style accounts for in a retention comparison: header (name, kind) pairs, and
# "body" for the MIME structure and the body. A forward makes a new message: everything.
_ACCOUNTS_FOR: dict[str, tuple[tuple[str, str], ...]] = {
    "from_rewritten": (("From", "changed"), ("Reply-To", "added")),
    "subject_tagged": (("Subject", "changed"),),
    "footer_appended": (("body", "changed"),),
}


def unexplained_changes(retention: Retention, faults: Sequence[str]) -> list[str]:
    """The differences in ``retention`` that none of the forwarding ``faults`` accounts for
    (``Reply-To changed``, ``the body changed``): a problem of its own, with its own fix."""
    if {"forward_inline", "forward_attachment"} & set(faults):
        return []
    accounted = {pair for fault in faults for pair in _ACCOUNTS_FOR.get(fault, ())}
    left = [
        f"{d.name} {d.kind}"
        for d in retention.diffs
        if (d.name, d.kind) not in accounted
        and not (d.kind == "missing" and "headers_stripped" in faults)
    ]
    if (retention.body_changed or retention.structure_changed) and (
        "body",
        "changed",
    ) not in accounted:
        left.append("the body changed")
    return left


def classify_forwarding(
    arrived: MessageInput, *, original: MessageInput | None = None
) -> StyleVerdict:
    """How the company server passed the message on, from its headers and body.

    Without ``original``, from the signs servers and clients leave (subject prefixes and tags,
    forward separators, message/rfc822 parts, "via" senders, disclaimers, Resent-* and
    X-Forwarded-* headers, SRS return paths, a changed envelope recipient). With it, from the
    precise differences. Several styles may apply; the gravest comes first.
    """
    msg = _message(arrived)
    hops = parse_received(msg)
    if original is None:
        signs, passed_on = _without_original(msg, hops)
        if not passed_on:
            signs = [(s, e) for s, e in signs if s != "redirect"]
        elif not any(s == "redirect" for s, _ in signs):
            signs.append(("redirect", "the message was passed on, not re-sent"))
    else:
        signs = _with_original(_message(original), msg, hops)
    styles = tuple(s for s in STYLES if any(style == s for style, _ in signs))
    evidence = tuple(f"{s}: {e}" for s in styles for style, e in signs if style == s)
    return StyleVerdict(styles=styles, evidence=evidence, with_original=original is not None)


# -- remediation -------------------------------------------------------------------------------


@cache
def load_forwarding_fixes() -> Mapping[str, Mapping[str, str]]:
    """The remediation texts of ``data/forwarding_fixes.yaml``: style -> family -> text."""
    raw = load_data_file("forwarding_fixes.yaml")
    fixes: dict[str, Mapping[str, str]] = {}
    for style, texts in raw.items():
        if style not in STYLES or not isinstance(texts, dict) or "generic" not in texts:
            raise ValueError(
                f"forwarding_fixes.yaml: {style!r} needs a known style and a generic text"
            )
        unknown = set(texts) - {"generic", *FAMILIES}
        if unknown:
            raise ValueError(f"forwarding_fixes.yaml: {style}: unknown families {sorted(unknown)}")
        fixes[style] = MappingProxyType({k: str(v).strip() for k, v in texts.items()})
    return MappingProxyType(fixes)


def remediation_for(
    style: str,
    family: str | None,
    *,
    custom_address: str | Sequence[str] | None = None,
    inbound_address: str | None = None,
) -> str:
    """What IT should change for ``style`` on a server of ``family`` (generic when unknown),
    naming the account's addresses; placeholders such as ``<recruiting address>`` stand for
    an address that is not known (a message analysed without its account).

    Several custom addresses (one fix for the subcompanies a server treats alike) are named
    together: ``jobs@a.example and jobs@b.example``.
    """
    fixes = load_forwarding_fixes()
    if style not in fixes:
        raise ValueError(f"unknown forwarding style {style!r}; known: {', '.join(fixes)}")
    texts = fixes[style]
    template = texts.get(family or "generic", texts["generic"])
    addresses = [custom_address] if isinstance(custom_address, str) else list(custom_address or ())
    parts = [address.partition("@") for address in addresses]
    return template.format(
        custom_address=_and_list(addresses) if addresses else "<recruiting address>",
        inbound_address=inbound_address or "<Company recruiting email address>",
        local_part=" or ".join(dict.fromkeys(p[0] for p in parts)) if parts else "<mailbox>",
        domain=_and_list(list(dict.fromkeys(p[2] for p in parts))) if parts else "<domain>",
    )


# -- everything at once ------------------------------------------------------------------------


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

    def lines(self) -> list[str]:
        """The report after the hop table, as plain lines (not yet made printable)."""
        out = []
        total = self.total_delay_s
        skewed = [h.index for h in self.hops if h.clock_skew]
        out.append(
            f"Total delay: {total:.1f} s over {len(self.hops)} hop(s)"
            if total is not None
            else f"Total delay: unknown ({len(self.hops)} hop(s))"
        )
        if skewed:
            out.append(
                f"Clock skew: hop(s) {_joined(skewed)} claim to be earlier than the previous one"
            )
        out.append(
            "Authentication-Results:"
            if self.authentication_results
            else "Authentication-Results: none"
        )
        for result in self.authentication_results:
            out.append(f"  {result.authserv_id or '(no authserv-id)'}: {result.describe()}")
        if not self.arc.instances and not self.arc.problems:
            out.append("ARC: none")
        else:
            state = "complete" if self.arc.complete else "incomplete"
            out.append(
                f"ARC: {len(self.arc.instances)} instance(s), {state}, cv={self.arc.cv} "
                "(structure only; no signature verified)"
            )
            for instance in self.arc.instances:
                results = ", ".join(f"{r.method}={r.result}" for r in instance.results)
                out.append(
                    f"  i={instance.i} cv={instance.cv} sealed by {instance.seal_domain}; "
                    f"{instance.authserv_id or '?'} saw: {results or 'nothing'}"
                )
            out += [f"  problem: {p}" for p in self.arc.problems]
        out.append(f"Server family: {self.family or 'unknown'}")
        if self.verdict.styles:
            out.append(f"Forwarding style: {', '.join(self.verdict.styles)}")
        else:
            out.append("Forwarding style: no sign of forwarding")
        out += [f"  {line}" for line in self.verdict.evidence]
        if self.remediation:
            out.append(
                f"Fix ({self.verdict.faults[0]}, {self.family or 'generic'}): {self.remediation}"
            )
        if self.loop.looped:
            out.append("Loop: LOOP")
            out += [f"  {line}" for line in self.loop.evidence]
        else:
            out.append(f"Loop: none ({self.loop.hop_count} hop(s))")
        if self.retention is not None:
            out.append(f"Retention: {'retained' if self.retention.retained else 'NOT retained'}")
            out += [f"  {line}" for line in self.retention.problems()]
        out.append(f"Verdict: {'FAIL' if self.failed else 'OK'}")
        return out


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
    msg = _message(arrived)
    custom, inbound = redirect_addresses(msg if original is None else _message(original), msg)
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
    sent_msg, arrived_msg = _message(sent), _message(arrived)
    inbound = next(
        (a for name in ("Delivered-To", "X-Original-To") for _, a in _addresses(arrived_msg, name)),
        None,
    )
    if inbound is None:
        recipients = [h.for_address for h in parse_received(arrived_msg) if h.for_address]
        inbound = recipients[-1].lower() if recipients else None
    named = [a for name in ("To", "Cc") for _, a in _addresses(sent_msg, name) if a != inbound]
    if named:
        return named[0], inbound
    senders = _addresses(sent_msg, "From")
    return (senders[0][1] if senders else None), inbound
