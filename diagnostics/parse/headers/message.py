"""A message's header fields and MIME parts, read the way every header analysis reads them.

Header fields come decoded (RFC 2047) and unfolded, top first; a field the stdlib header parser
cannot read is kept as text. MIME trees are walked at most :data:`MAX_DEPTH` deep. Nothing
here raises for malformed input: text written by strangers is read as well as it can be.
"""

from __future__ import annotations

import contextlib
import email.errors
import email.header
import email.policy
import email.utils
import functools
import re
from collections.abc import Sequence
from email.headerregistry import AddressHeader
from email.message import EmailMessage, Message
from email.parser import BytesParser

MessageInput = bytes | Message


# A header field is parsed again each time it is read (``message["Content-Type"]``,
# ``get_content_type()``), and the analysis reads the same few fields of every part many
# times over: short fields are parsed once per text. The parsed headers are immutable.
_SHARED_FIELD = 1024


@functools.lru_cache(maxsize=4096)
def _parsed_field(name: str, value: str) -> object:
    return email.policy.default.header_fetch_parse(name, value)


class _SharedFieldsPolicy(email.policy.EmailPolicy):
    """``email.policy.default``, with short fields parsed once for all the messages."""

    def header_fetch_parse(self, name: str, value: str) -> object:  # type: ignore[override]
        if type(value) is str and len(value) <= _SHARED_FIELD:
            return _parsed_field(name, value)
        return super().header_fetch_parse(name, value)


_PARSER = BytesParser(policy=_SharedFieldsPolicy())
MAX_DEPTH = 40
# The stdlib's header parser takes time that grows with the square of a field's length (a
# field of 250,000 encoded words: minutes and gigabytes). Real fields stay far below this
# (RFC 5322 2.1.1: 998 characters a line; long References and ARC sets reach some KB).
MAX_FIELD = 64 * 1024
MAX_HEADER_BLOCK = 1024 * 1024
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def bound_header_fields(data: bytes) -> bytes:
    """``data`` with each header field cut to :data:`MAX_FIELD` bytes and the header block
    to :data:`MAX_HEADER_BLOCK` (the body untouched); linear in the header block's size."""
    end = _BLANK_LINE.search(data)
    head, rest = (data[: end.start()], data[end.start() :]) if end else (data, b"")
    if len(head) <= MAX_FIELD:
        return data
    out: list[bytes] = []
    field = 0
    total = 0
    for line in head.splitlines(keepends=True):
        folded = line[:1] in (b" ", b"\t")
        before = field if folded else 0
        field = before + len(line)
        if before >= MAX_FIELD or total >= MAX_HEADER_BLOCK:
            continue
        if field > MAX_FIELD:
            # Keep the field's start, cut at a space so that no encoded word is split.
            kept = line[: MAX_FIELD - before].rsplit(b" ", 1)[0]
            line = kept + (b"\r\n" if line.endswith(b"\r\n") else b"\n")
        total += len(line)
        out.append(line)
    bounded = b"".join(out)
    if not bounded.endswith((b"\n", b"\r")) and rest:
        bounded += b"\r\n" if rest.startswith(b"\r") else b"\n"
    return bounded.rstrip(b"\r\n") + rest if rest else bounded


def parse_message(data: bytes) -> EmailMessage:
    """``data`` parsed with ``email.policy.default``, each header field cut to
    :data:`MAX_FIELD` bytes first (see :func:`bound_header_fields`)."""
    message = _PARSER.parsebytes(bound_header_fields(data))
    assert isinstance(message, EmailMessage)
    return message


# The analysis reads one message in many passes, each given its bytes: a message up to this
# size is parsed once for all of them (the readers never change it), at most this many kept.
_SHARED_BYTES = 256 * 1024
_SHARED_MESSAGES = 64


@functools.lru_cache(maxsize=_SHARED_MESSAGES)
def _shared(data: bytes) -> EmailMessage:
    return parse_message(data)


def as_message(message: MessageInput) -> Message:
    """``message`` as a parsed message (bytes parsed with :func:`parse_message`; the same
    small message's bytes parsed once, and shared: a reader must not change it)."""
    if not isinstance(message, bytes):
        return message
    return _shared(message) if len(message) <= _SHARED_BYTES else parse_message(message)


def squash(text: str) -> str:
    return " ".join(text.split())


def clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decode_raw(raw: str) -> str:
    text = re.sub(r"\r?\n(?=[ \t])", "", raw)
    with contextlib.suppress(email.errors.HeaderParseError, UnicodeError, LookupError, ValueError):
        text = str(email.header.make_header(email.header.decode_header(text)))
    return squash(text)


def header_fields(message: Message, name: str) -> list[tuple[str, object]]:
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
        text = squash(str(parsed)) if parsed is not None else _decode_raw(str(raw))
        fields.append((text, parsed))
    return fields


def header_text(message: Message, name: str) -> str | None:
    fields = header_fields(message, name)
    return fields[0][0] if fields else None


def header_addresses(message: Message, name: str) -> list[tuple[str, str]]:
    """The (display name, addr-spec) pairs of every field ``name``; addr-specs lower-cased."""
    found: list[tuple[str, str]] = []
    for text, parsed in header_fields(message, name):
        if isinstance(parsed, AddressHeader) and parsed.addresses:
            found += [(squash(a.display_name), a.addr_spec.lower()) for a in parsed.addresses]
        else:
            _, addr = email.utils.parseaddr(text)
            if addr:
                found.append(("", addr.lower()))
    return found


def subparts(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def decoded_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    charset = part.get_content_charset() or "us-ascii"
    try:
        text = data.decode(charset, "replace")
    except (LookupError, UnicodeError, ValueError):
        text = data.decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def and_list(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def and_numbers(numbers: Sequence[int]) -> str:
    items = [str(n) for n in numbers]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
