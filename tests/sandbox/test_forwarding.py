"""Tests for how the sandbox's company MX passes a candidate's message on."""

from __future__ import annotations

import email.policy
import email.utils
from email import message_from_bytes
from email.headerregistry import Address
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.sandbox.forwarding import (
    append_footer,
    apply,
    field_name,
    forward_as_attachment,
    forward_inline,
    rewrite_from,
    split_message,
    strip_headers,
    tag_subject,
)
from diagnostics.sandbox.scenario import MXFaults

FORWARDER = "jobs@acme.example"
INBOUND = "acme-jobs@m.personio.de"
MESSAGE_ID = "<cand-20250304-1@candidates.example>"
SUBJECT = "Bewerbung als Filialleiterin – München"
ORIGINAL_FROM = "Zoë Müller <zoe@candidates.example>"
PLAIN = "Guten Tag,\nanbei meine Bewerbung für die Stelle.\nZoë\n"
HTML = "<p>Guten Tag,<br>anbei meine Bewerbung für die Stelle.</p>\n"

# (name, physical lines) of every header field, in order; folded fields have several lines.
HEADERS: list[tuple[str, list[bytes]]] = [
    (
        "received",
        [
            b"Received: from mail.candidates.example (mail.candidates.example [203.0.113.50])",
            b"\tby mx.acme.example (Postfix) with ESMTPS id 4Zq1Lk; Tue, 04 Mar 2025 10:15:02 +0100",
        ],
    ),
    (
        "dkim-signature",
        [
            b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=candidates.example;",
            b" s=sel1; t=1741079700;",
            b" h=from:to:cc:subject:date:message-id:reply-to:references;",
            b" bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;",
            b" b=dzdVyOfAKCdLXdJOc9G2q8LoXSlEniSbav+yuU4zGeeruD00lszZVoG4ZHRNiYzR",
        ],
    ),
    ("from", [b"From: =?utf-8?q?Zo=C3=AB_M=C3=BCller?= <zoe@candidates.example>"]),
    ("to", [b"To: jobs@acme.example"]),
    ("cc", [b"Cc: Max Mustermann <max@candidates.example>"]),
    ("reply-to", [b"Reply-To: zoe.private@candidates.example"]),
    (
        "subject",
        [b"Subject: =?utf-8?q?Bewerbung_als_Filialleiterin_=E2=80=93_M=C3=BCnchen?="],
    ),
    ("date", [b"Date: Tue, 04 Mar 2025 10:15:00 +0100"]),
    ("message-id", [b"Message-ID: " + MESSAGE_ID.encode()]),
    ("references", [b"References: <job-4711@acme.example>", b" <ack-4711@acme.example>"]),
    ("mime-version", [b"MIME-Version: 1.0"]),
    ("content-type", [b'Content-Type: multipart/alternative; boundary="b1"']),
]
BODY_LINES = [
    b"--b1",
    b"Content-Type: text/plain; charset=utf-8",
    b"Content-Transfer-Encoding: quoted-printable",
    b"",
    b"Guten Tag,",
    b"anbei meine Bewerbung f=C3=BCr die Stelle.",
    b"Zo=C3=AB",
    b"",
    b"--b1",
    b"Content-Type: text/html; charset=utf-8",
    b"Content-Transfer-Encoding: quoted-printable",
    b"",
    b"<p>Guten Tag,<br>anbei meine Bewerbung f=C3=BCr die Stelle.</p>",
    b"",
    b"--b1--",
]


def fields(eol: bytes = b"\r\n", drop: tuple[str, ...] = ()) -> list[bytes]:
    return [eol.join(lines) + eol for name, lines in HEADERS if name not in drop]


def rest(eol: bytes = b"\r\n") -> bytes:
    return eol + eol.join(BODY_LINES) + eol


def build(eol: bytes = b"\r\n", drop: tuple[str, ...] = ()) -> bytes:
    return b"".join(fields(eol, drop)) + rest(eol)


DATA = build()


def parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text(part: EmailMessage | None) -> str:
    """A text part's content with line ends as Python writes them (the wire has CRLF)."""
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def test_sample_is_the_message_it_claims_to_be() -> None:
    message = parse(DATA)
    assert message["Subject"] == SUBJECT
    assert message["From"] == ORIGINAL_FROM
    assert message["Message-ID"] == MESSAGE_ID
    assert message.get_content_type() == "multipart/alternative"
    assert text(message.get_body(preferencelist=("plain",))) == PLAIN
    assert text(message.get_body(preferencelist=("html",))) == HTML


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_split_message_round_trips(eol: bytes) -> None:
    data = build(eol)
    header_fields, body = split_message(data)
    assert header_fields == fields(eol)
    assert body == rest(eol)
    assert b"".join(header_fields) + body == data
    assert [field_name(f) for f in header_fields] == [name for name, _ in HEADERS]
    # The folded DKIM-Signature is one field with all five of its lines.
    assert header_fields[1].count(eol) == 5


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"Subject: x\r\nFrom: y\r\n", ([b"Subject: x\r\n", b"From: y\r\n"], b"")),
        (b"Subject: x\r\n\r\n", ([b"Subject: x\r\n"], b"\r\n")),
        (b"Subject: x\n\nbody\n\nmore", ([b"Subject: x\n"], b"\nbody\n\nmore")),
        (
            b"Subject: a\r\n\tb\r\nTo: c\r\n\r\n",
            ([b"Subject: a\r\n\tb\r\n", b"To: c\r\n"], b"\r\n"),
        ),
        (b"Subject: no line end", ([b"Subject: no line end"], b"")),
    ],
)
def test_split_message_edges(data: bytes, expected: tuple[list[bytes], bytes]) -> None:
    assert split_message(data) == expected
    assert b"".join(expected[0]) + expected[1] == data


def test_redirect_changes_nothing() -> None:
    assert apply(DATA, MXFaults(), forwarder=FORWARDER, recipient=INBOUND) == DATA
    lf = build(b"\n")
    assert apply(lf, MXFaults(), forwarder=FORWARDER, recipient=INBOUND) == lf


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize(
    ("names", "dropped"),
    [
        (("DKIM-Signature",), ("dkim-signature",)),
        (("references", "REPLY-TO"), ("references", "reply-to")),
        (("To",), ("to",)),  # not Reply-To
        (("Received", "cc", "Message-Id"), ("received", "cc", "message-id")),
        (("X-Not-There",), ()),
        ((), ()),
    ],
)
def test_strip_headers_removes_exactly_the_named(
    eol: bytes, names: tuple[str, ...], dropped: tuple[str, ...]
) -> None:
    assert strip_headers(build(eol), names) == build(eol, dropped)


def test_strip_headers_removes_every_occurrence() -> None:
    data = b"Received: a\r\n b\r\nSubject: s\r\nreceived: c\r\n\r\nbody\r\n"
    assert strip_headers(data, ("RECEIVED",)) == b"Subject: s\r\n\r\nbody\r\n"


def test_tag_subject_changes_only_the_subject() -> None:
    tagged = tag_subject(DATA, "[EXT]")
    expected = DATA.replace(
        b"Subject: =?utf-8?q?Bewerbung",
        b"Subject: [EXT] =?utf-8?q?Bewerbung",
    )
    assert expected != DATA
    assert tagged == expected
    assert parse(tagged)["Subject"] == f"[EXT] {SUBJECT}"


def test_append_footer_to_text_part_only() -> None:
    footer = "Diese E-Mail wurde auf Viren geprüft."
    result = parse(append_footer(DATA, footer))
    assert text(result.get_body(preferencelist=("plain",))) == (
        "Guten Tag,\nanbei meine Bewerbung für die Stelle.\nZoë\n\n"
        "Diese E-Mail wurde auf Viren geprüft.\n"
    )
    assert text(result.get_body(preferencelist=("html",))) == HTML
    assert [p.get_content_type() for p in result.iter_parts()] == ["text/plain", "text/html"]
    for name in ("Subject", "From", "Message-ID", "References", "Reply-To", "Cc"):
        assert result[name] == parse(DATA)[name]


def test_append_footer_without_text_part_attaches_it() -> None:
    data = b"Subject: s\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n"
    result = parse(append_footer(data, "Footer"))
    assert result.get_content_type() == "multipart/mixed"
    assert [text(p) for p in result.iter_parts()] == ["<p>hi</p>\n", "Footer\n"]


def test_rewrite_from_keeps_original_aside() -> None:
    result = parse(rewrite_from(DATA, FORWARDER))
    assert len(result.get_all("From") or []) == 1
    # The non-ASCII name with "via a@b" in it must not spill into the address itself.
    assert result["From"].addresses == (
        Address(display_name=f"Zoë Müller via {FORWARDER}", addr_spec=FORWARDER),
    )
    assert email.utils.parseaddr(str(result["From"]))[1] == FORWARDER
    assert result["X-Original-From"] == ORIGINAL_FROM
    for name in ("Subject", "To", "Cc", "Reply-To", "Message-ID", "References"):
        assert result[name] == parse(DATA)[name]


@pytest.mark.parametrize(
    ("from_field", "display_name"),
    [
        (b"From: Max Mustermann <max@candidates.example>", "Max Mustermann via jobs@acme.example"),
        (b"From: max@candidates.example", "max@candidates.example via jobs@acme.example"),
        (
            b'From: "M\xc3\xbcller, Zo\xc3\xab" <zoe@candidates.example>',
            "Müller, Zoë via jobs@acme.example",
        ),
    ],
)
def test_rewrite_from_addresses(from_field: bytes, display_name: str) -> None:
    data = b"Subject: s\r\n" + from_field + b"\r\nTo: jobs@acme.example\r\n\r\nHallo\r\n"
    result = parse(rewrite_from(data, FORWARDER))
    assert result["From"].addresses == (Address(display_name=display_name, addr_spec=FORWARDER),)


def test_forward_inline_quotes_the_original() -> None:
    result = parse(forward_inline(DATA, FORWARDER, INBOUND))
    assert result["Subject"] == f"Fwd: {SUBJECT}"
    assert result["From"] == FORWARDER
    assert result["To"] == INBOUND
    assert result["Message-ID"] != MESSAGE_ID
    assert result["Message-ID"].endswith("@acme.example>")
    assert result.get("Reply-To") is None
    assert result.get_content_type() == "text/plain"
    assert text(result) == (
        "---------- Forwarded message ---------\n"
        f"From: {ORIGINAL_FROM}\n"
        "Date: Tue, 04 Mar 2025 10:15:00 +0100\n"
        f"Subject: {SUBJECT}\n"
        "To: jobs@acme.example\n\n" + PLAIN
    )


def test_forward_as_attachment_carries_the_original() -> None:
    result = parse(forward_as_attachment(DATA, FORWARDER, INBOUND))
    assert result["Subject"] == f"Fwd: {SUBJECT}"
    assert result["From"] == FORWARDER
    assert result["To"] == INBOUND
    assert result["Message-ID"] != MESSAGE_ID
    parts = list(result.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/rfc822"]
    assert text(parts[0]) == "The forwarded message is attached.\n"
    assert parts[1].get_filename() == "forwarded.eml"
    attached = parts[1].get_content()
    assert isinstance(attached, EmailMessage)
    assert attached["Message-ID"] == MESSAGE_ID
    assert attached["Subject"] == SUBJECT
    assert attached["From"] == ORIGINAL_FROM
    assert attached["References"] == "<job-4711@acme.example> <ack-4711@acme.example>"
    assert text(attached.get_body(preferencelist=("plain",))) == PLAIN


@pytest.mark.parametrize(
    ("faults", "check"),
    [
        (MXFaults(style="forward_inline"), lambda m: m["Subject"] == f"Fwd: {SUBJECT}"),
        (MXFaults(rewrite_from=True), lambda m: m["X-Original-From"] == ORIGINAL_FROM),
        (MXFaults(strip_headers=("DKIM-Signature",)), lambda m: "DKIM-Signature" not in m),
        (MXFaults(subject_tag="[EXT]"), lambda m: m["Subject"] == f"[EXT] {SUBJECT}"),
    ],
    ids=["inline", "rewrite_from", "strip", "tag"],
)
def test_apply_dispatches_faults(faults: MXFaults, check: object) -> None:
    result = apply(DATA, faults, forwarder=FORWARDER, recipient=INBOUND)
    assert result != DATA
    assert callable(check) and check(parse(result)) is True


HEADER_NAMES = st.from_regex(r"\AX-[A-Za-z0-9][A-Za-z0-9-]{0,20}\Z")
VALUE_CHUNKS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    min_size=1,
    max_size=30,
)


@settings(database=None, deadline=None)
@given(
    name=HEADER_NAMES,
    chunks=st.lists(VALUE_CHUNKS, min_size=1, max_size=3),
    fold=st.sampled_from([b" ", b"\t"]),
    eol=st.sampled_from([b"\r\n", b"\n"]),
    position=st.integers(min_value=0, max_value=len(HEADERS)),
    spelling=st.sampled_from([str.lower, str.upper, str.swapcase, str]),
)
def test_strip_headers_removes_any_inserted_field(
    name: str,
    chunks: list[str],
    fold: bytes,
    eol: bytes,
    position: int,
    spelling: object,
) -> None:
    original = build(eol)
    value = (eol + fold).join(c.encode("utf-8") for c in chunks)
    inserted = name.encode("ascii") + b": " + value + eol
    header_fields = fields(eol)
    header_fields.insert(position, inserted)
    data = b"".join(header_fields) + rest(eol)
    assert callable(spelling)
    assert strip_headers(data, (spelling(name),)) == original
