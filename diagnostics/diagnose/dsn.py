"""Bounce messages: RFC 3464 delivery status notifications and the free-text bounces of
Exchange, Gmail, Postfix, Exim and Sendmail.

:func:`looks_like_message` tells a message from a bare reply or exception text;
:func:`parse_bounce_message` reads the per-recipient fields of a ``message/delivery-status``
part (when there is one) and the human-readable text, without the returned original message.
"""

from __future__ import annotations

import contextlib
import email
import email.errors
import email.header
import email.message
import email.policy
import html
import re
from dataclasses import dataclass

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
# Where free-text bounces start quoting the original message, whose headers may say anything.
_ORIGINAL_MARKERS = re.compile(
    r"^(?:-{3,} ?This is a copy of the message|-{3,} ?Original message (?:follows|headers)"
    r"|-{3,} ?Returned (?:mail|message) follows|-{3,} ?The header of the original message"
    r"|-{3,} ?Below this line is a copy of the message|Original message headers:)",
    re.IGNORECASE | re.MULTILINE,
)


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
    """Whether ``data`` starts with a header block of an e-mail message."""
    names = set()
    for raw in data[:16384].decode("utf-8", "replace").splitlines():
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
    return re.sub(r"\s*\r?\n[ \t]+", " ", value).strip()


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
    markup = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</(?:p|div|tr|li|h\d)>", "\n", markup)
    return html.unescape(re.sub(r"<[^>]+>", " ", markup))


def parse_bounce_message(data: bytes) -> Bounce:
    """The DSN fields and human-readable text of a bounce message."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    plain: list[str] = []
    markup: list[str] = []
    status_groups: list[dict[str, str]] = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            # The returned original: its headers are the sender's, not the bounce's words.
            break
        if kind in ("message/delivery-status", "message/global-delivery-status"):
            status_groups = parse_status_fields(_status_text(part))
        elif kind == "text/plain":
            plain.append(_payload_text(part))
        elif kind == "text/html":
            markup.append(_html_text(_payload_text(part)))
    text = "\n".join(plain) if plain else "\n".join(markup)
    cut = _ORIGINAL_MARKERS.search(text)
    if cut is not None:
        text = text[: cut.start()]
    reporting = status_groups[0].get("reporting-mta") if status_groups else None
    recipients = tuple(
        RecipientStatus(
            final_recipient=_typed_value(group.get("final-recipient")),
            action=group.get("action"),
            status=group.get("status"),
            diagnostic_code=_typed_value(group.get("diagnostic-code")),
            remote_mta=_typed_value(group.get("remote-mta")),
        )
        for group in status_groups[1:]
        if "final-recipient" in group or "status" in group
    )
    return Bounce(
        subject=_decoded(_unfold(str(message.get("Subject", "")))),
        text=text.replace("\r\n", "\n").strip(),
        reporting_mta=_typed_value(reporting),
        recipients=recipients,
    )
