"""The words of a bounce read as text: where the returned original starts, the delivery-status
fields and the human-readable report of a body whose MIME structure could not be followed, and
the header blocks (of the bounce or of the returned message) that are never the error.
"""

from __future__ import annotations

import quopri
import re

from diagnostics.diagnose.patterns import fold_case

_FIELD = re.compile(r"^([A-Za-z0-9-]+):[ \t]*(.*)$")
# Where bounces start quoting the original message, whose headers may say anything: the
# free-text markers of Exim, Postfix, qmail, Sendmail, Gmail ("Message header follows") and
# Exchange, and the MIME part that carries the original when the parts were not split. In
# lower case: it is searched in the case-folded text (see :func:`original_start`).
ORIGINAL_MARKERS = re.compile(
    r"^(?:-{3,} ?this is a copy of (?:the|your) message|-{3,} ?original message (?:follows|headers)"
    r"|-{3,} ?returned (?:mail|message)\b|-{3,} ?the header of the original message"
    r"|^.{0,80}\b(?:original|returned) message (?:follows?|attached|is attached)\b"
    r"|-{3,} ?below this line is a copy of the message|original message headers:"
    r"|-{3,} ?original message ?-{3,}[ \t]*$"
    r"|-{3,} ?message headers? follows?\b"
    r"|content-type:[ \t]*(?:message/(?:rfc822|rfc822-headers|global|global-headers)|text/rfc822-headers)(?![\w/-]))",
    re.MULTILINE,
)


def original_start(text: str) -> int | None:
    """Where ``text`` starts quoting the returned original (:data:`ORIGINAL_MARKERS`), found
    in any case: searched case-sensitively in the folded text, which is several times faster
    and keeps each character at its place."""
    found = ORIGINAL_MARKERS.search(fold_case(text))
    return None if found is None else found.start()


# A MIME delimiter line: "--" and a boundary (RFC 2046 characters, at most 70), "--" to close.
_DELIMITER = re.compile(r"^--([0-9A-Za-z'()+_,./:=?-]{1,70}?)(--)?[ \t]*\r?$", re.MULTILINE)
# The fields of a MIME part's own header, in a body read as text.
_PART_FIELD = re.compile(
    r"^Content-[A-Za-z-]+:.*(?:\r?\n[ \t].*)*\r?\n?", re.IGNORECASE | re.MULTILINE
)
# Fields of a message header: a run of them in the text is a message's header, not the error.
# The fields of a delivery status notification (RFC 3464) are not among them.
_MESSAGE_FIELDS = frozenset(
    {
        "arc-authentication-results",
        "arc-message-signature",
        "arc-seal",
        "authentication-results",
        "auto-submitted",
        "cc",
        "content-transfer-encoding",
        "content-type",
        "date",
        "delivered-to",
        "dkim-signature",
        "domainkey-signature",
        "from",
        "in-reply-to",
        "list-unsubscribe",
        "message-id",
        "mime-version",
        "received",
        "received-spf",
        "references",
        "reply-to",
        "return-path",
        "sender",
        "subject",
        "thread-index",
        "thread-topic",
        "to",
    }
)
# Fields only a message header has: one of them alone is enough to know the block.
_HEADER_ONLY = frozenset(
    {
        "arc-authentication-results",
        "arc-message-signature",
        "arc-seal",
        "authentication-results",
        "dkim-signature",
        "domainkey-signature",
        "received",
        "received-spf",
    }
)


_QUOTED = re.compile(r"^(?:>[ \t]?)+")


def _header_field(line: str) -> str | None:
    """The lower-case name of the header field on ``line`` (quoted with ``>`` or not)."""
    if ":" not in line:
        return None
    field = _FIELD.match(_QUOTED.sub("", line) if line[:1] == ">" else line)
    return field.group(1).lower() if field is not None else None


def _is_header_block(names: list[str]) -> bool:
    """Whether a run of fields is a message's header: two fields or more of which one is a
    message header field (``X-`` fields included), or one field only a header has."""
    known = [n for n in names if n in _MESSAGE_FIELDS or n.startswith("x-")]
    return bool(known) and (len(names) >= 2 or names[0] in _HEADER_ONLY)


def without_header_blocks(text: str) -> str:
    """``text`` without the header blocks of messages in it (see :func:`_is_header_block`),
    with their folded lines."""
    lines = text.split("\n")
    kept: list[str] = []
    index = 0
    while index < len(lines):
        end, names = index, []
        while end < len(lines):
            name = _header_field(lines[end])
            if name is None:
                break
            names.append(name)
            end += 1
            while end < len(lines) and _folded(lines[end]):
                end += 1
        if names and _is_header_block(names):
            index = end
            continue
        kept.append(lines[index])
        index += 1
    return "\n".join(kept)


def _folded(line: str) -> bool:
    unquoted = _QUOTED.sub("", line) if line[:1] == ">" else line
    return unquoted[:1] in (" ", "\t") and bool(unquoted.strip())


def parse_status_fields(text: str) -> list[dict[str, str]]:
    """The field groups of a ``message/delivery-status`` body, names in lower case."""
    groups: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                groups.append(current)
            current, last = {}, ""
        elif line[:1] in (" ", "\t") and last:
            current[last] = f"{current[last]} {line.strip()}"
        elif (field := _FIELD.match(line)) is not None:
            last = field.group(1).lower()
            current[last] = field.group(2).strip()
    if current:
        groups.append(current)
    return groups


def body_boundary(body: str) -> str | None:
    """The MIME boundary a multipart body uses: its first delimiter line that comes again."""
    found = [m.group(1) for m in _DELIMITER.finditer(body)]
    return next((b for b in found if found.count(b) >= 2), None)


def raw_report(body: str, quoted_printable: bool = False) -> tuple[str, list[dict[str, str]]]:
    """The human-readable report and the delivery-status field groups of a bounce body read
    as text, up to the returned original; MIME delimiters and part headers are dropped."""
    cut = original_start(body)
    if cut is not None:
        body = body[:cut]
    body = _DELIMITER.sub("", _PART_FIELD.sub("", body))
    if quoted_printable:
        body = quopri.decodestring(body.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "replace"
        )
    groups = [
        group
        for group in parse_status_fields(body)
        if {"final-recipient", "status", "reporting-mta"} & set(group)
        and ("action" in group or "reporting-mta" in group or "diagnostic-code" in group)
    ]
    return body, groups
