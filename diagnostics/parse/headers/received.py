"""The Received chain: each Received header parsed into a :class:`Hop` (RFC 5321 section 4.4
and what servers really write), oldest first, with the delay since the previous hop and the
server family a hop's own text names.
"""

from __future__ import annotations

import datetime as dt
import email.errors
import email.header
import email.policy
import email.utils
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from diagnostics.parse.headers.message import (
    MessageInput,
    as_message,
    squash,
)

Family = Literal["exchange", "google", "postfix", "exim", "sendmail"]
FAMILIES: tuple[Family, ...] = get_args(Family)


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
    raw = squash(value)
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
    msg = as_message(message)
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
