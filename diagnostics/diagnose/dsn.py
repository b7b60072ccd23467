"""Bounce messages: RFC 3464 delivery status notifications and the free-text bounces of
Exchange, Gmail, Postfix, Exim and Sendmail.

:func:`looks_like_message` tells a message from a bare reply or exception text;
:func:`parse_bounce_message` reads the per-recipient fields of a ``message/delivery-status``
part (when there is one) and the human-readable text, without the returned original message.
A bounce whose MIME structure cannot be followed (the boundary in its header differs from the
one its body uses, or is missing) is read again with the boundary its body uses, and failing
that from its raw text (:mod:`diagnostics.diagnose.rawtext`).
"""

from __future__ import annotations

import contextlib
import email
import email.errors
import email.header
import email.message
import re
from dataclasses import dataclass

from diagnostics.diagnose.rawtext import (
    body_boundary,
    original_start,
    parse_status_fields,
    raw_report,
    without_header_blocks,
)

_HEADER_NAMES = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "received",
        "return-path",
        "message-id",
        "mime-version",
        "content-type",
        "auto-submitted",
    }
)
_FIELD = re.compile(r"^([A-Za-z0-9-]+):[ \t]*(.*)$")
# The envelope line an mbox puts before each message ("From sender date").
_ENVELOPE = re.compile(rb"^From \S+[^\r\n]*\r?\n")
# Starts only where a whitespace run starts: a long run of spaces stays linear to search.
_FOLD = re.compile(r"(?<!\s)\s*\r?\n[ \t]+")
# The content types of a returned original (RFC 3462, RFC 6533): the sender's message or its
# header, which say nothing about the failure.
RETURNED_TYPES = frozenset(
    {
        "message/rfc822",
        "text/rfc822-headers",
        "message/rfc822-headers",
        "message/global",
        "message/global-headers",
    }
)
# The header of the MIME part carrying the returned original, up to its blank line: a
# delimiter line, at most 30 fields, one of them its Content-Type. Possessive runs keep the
# search linear on a stranger's text.
_RETURNED_PART = re.compile(
    rb"^--[^\r\n]++\r?\n(?:[^\r\n]++\r?\n){0,30}?content-type:[ \t]*+"
    rb"(?:message/(?:rfc822|rfc822-headers|global|global-headers)|text/rfc822-headers)"
    rb"(?![\w/-])[^\r\n]*+\r?\n(?:[^\r\n]++\r?\n)*+\r?\n",
    re.MULTILINE,
)  # searched in the message in lower case (bytes.lower() changes only ASCII letters)
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1>", re.IGNORECASE | re.DOTALL)
_LINE_BREAK_TAG = re.compile(r"<br\s*/?>|</(?:p|div|tr|li|h\d)>", re.IGNORECASE)
_TAG = re.compile(r"<[^<>]+>")  # a stray "<" ends the run: linear on "<<<<..."


@dataclass(frozen=True)
class RecipientStatus:
    """The per-recipient fields of a delivery status notification (RFC 3464 section 2.3)."""

    final_recipient: str | None = None
    action: str | None = None
    status: str | None = None
    diagnostic_code: str | None = None
    remote_mta: str | None = None


@dataclass(frozen=True)
class Bounce:
    """What a bounce message says: DSN fields if it has them, and its human-readable text."""

    subject: str
    # The human-readable report, without header blocks (see rawtext.without_header_blocks).
    text: str
    reporting_mta: str | None = None
    recipients: tuple[RecipientStatus, ...] = ()

    @property
    def failed(self) -> RecipientStatus | None:
        """The recipient the diagnosis is about: the first that failed, else the first."""
        for recipient in self.recipients:
            if (recipient.action or "").lower() == "failed":
                return recipient
        return self.recipients[0] if self.recipients else None


def looks_like_message(data: bytes) -> bool:
    """Whether ``data`` starts with a header block of an e-mail message (after the envelope
    ``From`` line of an mbox, if there is one)."""
    names = set()
    data = _ENVELOPE.sub(b"", data[:16384], count=1)
    # The header block ends at the first empty line, if not before: only that much is read.
    ends = [at for at in (data.find(b"\n\n"), data.find(b"\n\r\n")) if at >= 0]
    if ends:
        data = data[: min(ends) + 1]
    for raw in data.decode("utf-8", "replace").splitlines():
        if not raw.strip():
            break
        if raw[:1] in (" ", "\t"):
            continue
        field = _FIELD.match(raw)
        if field is None:
            return False
        names.add(field.group(1).lower())
    return len(names & _HEADER_NAMES) >= 2


def _unfold(value: str) -> str:
    return _FOLD.sub(" ", value).strip()


def _decoded(value: str) -> str:
    """A header value with its RFC 2047 encoded words decoded (localised NDR subjects)."""
    with contextlib.suppress(email.errors.HeaderParseError, UnicodeError, LookupError):
        return str(email.header.make_header(email.header.decode_header(value)))
    return value


def _typed_value(value: str | None) -> str | None:
    """``rfc822; a@example.org`` -> ``a@example.org`` (the address or name type is dropped)."""
    if value is None:
        return None
    kind, sep, rest = value.partition(";")
    return rest.strip() if sep and " " not in kind.strip() else value.strip()


def _payload_text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _status_text(part: email.message.Message) -> str:
    """The raw body of a ``message/delivery-status`` part (the parser splits it in blocks)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n\n".join(
            "\n".join(f"{k}: {_unfold(str(v))}" for k, v in block.items())
            for block in payload
            if isinstance(block, email.message.Message)
        )
    return str(payload)


def _html_text(markup: str) -> str:
    import html  # only HTML-only bounces need it

    markup = _SCRIPT.sub(" ", markup)
    markup = _LINE_BREAK_TAG.sub("\n", markup)
    return html.unescape(_TAG.sub(" ", markup))


def _read_parts(
    message: email.message.Message,
) -> tuple[list[str], list[str], list[dict[str, str]]]:
    """The plain and HTML texts and the delivery-status field groups, up to the returned original."""
    plain: list[str] = []
    markup: list[str] = []
    status_groups: list[dict[str, str]] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind in RETURNED_TYPES:
            # The returned original: its headers are the sender's, not the bounce's words.
            break
        if kind in ("message/delivery-status", "message/global-delivery-status"):
            status_groups = parse_status_fields(_status_text(part))
        elif kind == "text/plain":
            plain.append(_payload_text(part))
        elif kind == "text/html":
            markup.append(_html_text(_payload_text(part)))
    return plain, markup, status_groups


def _unreadable(message: email.message.Message) -> bool:
    """A multipart message the parser could not split into parts."""
    return message.get_content_maintype() == "multipart" and not message.is_multipart()


def _with_body_boundary(message: email.message.Message) -> email.message.Message | None:
    """``message`` parsed again with the boundary its body uses, if that finds parts."""
    body = message.get_payload()
    if not isinstance(body, str):
        return None
    boundary = body_boundary(body)
    if boundary is None or boundary == message.get_boundary():
        return None
    copy = email.message_from_string(message.as_string())
    copy.set_param("boundary", boundary)
    repaired = email.message_from_string(copy.as_string())
    return None if _unreadable(repaired) else repaired


def _recipients(groups: list[dict[str, str]]) -> tuple[RecipientStatus, ...]:
    return tuple(
        RecipientStatus(
            final_recipient=_typed_value(group.get("final-recipient")),
            action=group.get("action"),
            status=group.get("status"),
            diagnostic_code=_typed_value(group.get("diagnostic-code")),
            remote_mta=_typed_value(group.get("remote-mta")),
        )
        for group in groups
        if "final-recipient" in group or "status" in group
    )


def parse_bounce_message(data: bytes) -> Bounce:
    """The DSN fields and human-readable text of a bounce message.

    Only the human-readable report and the delivery-status fields are read: never the headers
    of the bounce itself nor those of the returned message, whatever they say.
    """
    # The returned original is never read, so the parser is not given it: it is often most
    # of the bounce, with MIME parts of its own.
    returned = _RETURNED_PART.search(data.lower())
    if returned is not None:
        data = data[: returned.end()]
    # The parser's default policy, compat32: email.policy.default reads much more slowly.
    message = email.message_from_bytes(data)
    if _unreadable(message):
        message = _with_body_boundary(message) or message
    plain, markup, status_groups = _read_parts(message)
    text = "\n".join(plain) if plain else "\n".join(markup)
    if not status_groups:
        # No delivery-status part was found: a broken MIME structure, or one declared as text.
        raw = message.get_payload() if _unreadable(message) else text
        if isinstance(raw, str):
            text, status_groups = raw_report(raw, "quoted-printable" in raw.lower())
    cut = original_start(text)
    if cut is not None:
        text = text[:cut]
    reporting = next((g["reporting-mta"] for g in status_groups if "reporting-mta" in g), None)
    return Bounce(
        subject=_decoded(_unfold(str(message.get("Subject", "")))),
        text=without_header_blocks(text.replace("\r\n", "\n")).strip(),
        reporting_mta=_typed_value(reporting),
        recipients=_recipients([g for g in status_groups if "reporting-mta" not in g]),
    )
