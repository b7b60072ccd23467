"""diagnostics.headers: retention, forwarding style, Received chain, loops, Authentication-Results,
ARC, server family and remediation, on hand-made messages, the sandbox's forwarding faults and the
corpus in fixtures/messages/."""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import hashlib
import ipaddress
import re
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.findings import Cause, Status
from diagnostics.headers import (
    FAMILIES,
    RETAINED,
    STYLES,
    HeaderDiff,
    analyse_headers,
    body_digest,
    body_text,
    classify_forwarding,
    compare_retention,
    detect_loop,
    load_forwarding_fixes,
    mime_structure,
    parse_arc,
    parse_authentication_results,
    parse_authentication_results_value,
    parse_hop,
    parse_message,
    parse_received,
    printable,
    redirect_addresses,
    remediation_for,
    server_family,
    subject_tag,
    total_delay,
    unexplained_changes,
)
from diagnostics.sandbox import forwarding
from diagnostics.sandbox.smtpserver import received_header

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "messages"
LABELS: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "labels.yaml").read_text("utf-8"))
UTC = dt.UTC


def application(**overrides: str | None) -> bytes:
    """A candidate's reply with every retained header, as the sandbox scenarios send it."""
    headers: dict[str, str | None] = {
        "From": "Max Mustermann <max.mustermann@example.org>",
        "To": "jobs@acme.example",
        "Cc": "max.privat@example.org",
        "Subject": "Re: Ihre Bewerbung als Store Manager",
        "Date": "Thu, 26 Nov 2026 09:30:00 +0100",
        "Message-ID": "<reply-1@example.org>",
        "Reply-To": "max.mustermann@example.org",
        "In-Reply-To": "<invite-7@acme.example>",
        "References": "<invite-7@acme.example>",
    }
    headers.update(overrides)
    message = EmailMessage()
    for name, value in headers.items():
        if value is not None:
            message[name] = value
    message.set_content("Guten Tag,\n\ngerne komme ich zum Gespräch.\n")
    return message.as_bytes(policy=email.policy.SMTP)


def received(*lines: str) -> bytes:
    """Received header fields, newest first, as servers prepend them."""
    return b"".join(f"Received: {line}\r\n".encode() for line in lines)


MX_HOP = (
    "from mail.example.org (mail.example.org [198.51.100.7]) by mx.acme.example (Postfix) "
    "with ESMTPS id 4ZbQ1 for <jobs@acme.example>; Thu, 26 Nov 2026 09:30:02 +0100"
)
PLATFORM_HOP = (
    "from mx.acme.example (mx.acme.example [192.0.2.25]) by mx.m.personio.de (Postfix) "
    "with ESMTPS id 4ZbQ2 for <acme-jobs@m.personio.de>; Thu, 26 Nov 2026 09:30:04 +0100"
)


def redirected(data: bytes) -> bytes:
    return received(PLATFORM_HOP, MX_HOP) + data


# -- retention ---------------------------------------------------------------------------------


def test_retained_headers_are_the_contracts() -> None:
    assert RETAINED == (
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


def test_a_redirect_that_only_prepends_received_headers_retains_everything() -> None:
    retention = compare_retention(application(), redirected(application()))
    assert retention.retained is True
    assert retention.diffs == ()
    assert retention.compared == RETAINED
    assert retention.summary() == (
        "Retained: From, To, Cc, Subject, Date, Message-ID, Reply-To, In-Reply-To, References, "
        "the MIME structure and the body arrived unchanged."
    )
    assert retention.outcome().status is Status.PASS


def test_headers_are_compared_by_meaning_not_by_bytes() -> None:
    head, _, body = application().partition(b"\r\n\r\n")
    mime = b"".join(
        line + b"\r\n" for line in head.split(b"\r\n") if line.startswith((b"MIME", b"Content"))
    )
    arrived = (
        b'From: "Max Mustermann" <max.mustermann@EXAMPLE.ORG>\r\n'
        b"To: <jobs@acme.example>\r\n"
        b"Cc: max.privat@example.org\r\n"
        b"Subject: =?utf-8?q?Re=3A_Ihre_Bewerbung?=\r\n  als   Store Manager\r\n"
        b"Date: Thu, 26 Nov 2026 08:30:00 +0000\r\n"
        b"Message-ID:   <reply-1@example.org>  \r\n"
        b"Reply-To: max.mustermann@example.org\r\n"
        b"In-Reply-To: <invite-7@acme.example>\r\n"
        b"References:\r\n <invite-7@acme.example>\r\n" + mime + b"\r\n" + body
    )
    retention = compare_retention(application(), arrived)
    assert (retention.diffs, retention.retained) == ((), True)


def test_a_quoted_printable_relay_does_not_change_the_body() -> None:
    # A relay whose next hop lacks 8BITMIME re-encodes 8bit text as quoted-printable.
    sent = (
        b"From: a@example.org\r\nTo: jobs@acme.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"Gr\xc3\xbc\xc3\x9fe\r\n"
    )
    arrived = sent.replace(b"8bit", b"quoted-printable").replace(
        b"Gr\xc3\xbc\xc3\x9fe", b"Gr=C3=BC=C3=9Fe"
    )
    retention = compare_retention(sent, arrived)
    assert (retention.retained, retention.body_changed) == (True, False)


def test_each_kind_of_difference_is_named() -> None:
    sent = application(**{"Reply-To": None})
    arrived = application(
        Subject="[EXTERNAL] Re: Ihre Bewerbung als Store Manager",
        References=None,
        **{"Reply-To": "hr@acme.example"},
    )
    arrived = arrived.replace(b"Cc: ", b"Cc: max.privat@example.org\r\nCc: ", 1)
    retention = compare_retention(sent, arrived)
    assert retention.diffs == (
        HeaderDiff(
            "Cc",
            "duplicated",
            "max.privat@example.org",
            "max.privat@example.org | max.privat@example.org",
        ),
        HeaderDiff(
            "Subject",
            "changed",
            "Re: Ihre Bewerbung als Store Manager",
            "[EXTERNAL] Re: Ihre Bewerbung als Store Manager",
        ),
        HeaderDiff("Reply-To", "added", None, "hr@acme.example"),
        HeaderDiff("References", "missing", "<invite-7@acme.example>", None),
    )
    assert retention.retained is False
    assert retention.summary() == (
        "Not retained: Cc duplicated ('max.privat@example.org | max.privat@example.org'); "
        "Subject changed ('Re: Ihre Bewerbung als Store Manager' -> "
        "'[EXTERNAL] Re: Ihre Bewerbung als Store Manager'); Reply-To added ('hr@acme.example'); "
        "References missing (sent: '<invite-7@acme.example>')."
    )
    assert retention.diff("subject") == retention.diffs[1]
    assert retention.diff("Date") is None
    outcome = retention.outcome(remediation="fix it")
    assert (outcome.status, outcome.cause, outcome.title, outcome.remediation) == (
        Status.FAIL,
        Cause.UNKNOWN,
        "The redirection duplicated Cc, changed Subject, added Reply-To and dropped References",
        "fix it",
    )


def test_an_empty_header_that_disappears_is_missing_not_unnamed() -> None:
    retention = compare_retention(application(Subject=""), application(Subject=None))
    assert retention.diffs == (HeaderDiff("Subject", "missing", "", None),)


def test_display_name_and_date_instant_changes_are_differences() -> None:
    arrived = application(
        From="Max via Jobs <max.mustermann@example.org>", Date="Thu, 26 Nov 2026 09:30:01 +0100"
    )
    assert [(d.name, d.kind) for d in compare_retention(application(), arrived).diffs] == [
        ("From", "changed"),
        ("Date", "changed"),
    ]


def test_a_footer_changes_the_body_not_the_structure() -> None:
    arrived = forwarding.append_footer(application(), "CAUTION: External.")
    retention = compare_retention(application(), arrived)
    assert (retention.diffs, retention.structure_changed, retention.body_changed) == (
        (),
        False,
        True,
    )
    assert retention.problems() == ["body changed"]
    assert retention.summary() == "Not retained: body changed."


def test_an_attachment_forward_changes_the_structure() -> None:
    arrived = forwarding.forward_as_attachment(
        application(), "jobs@acme.example", "acme-jobs@m.personio.de"
    )
    retention = compare_retention(application(), arrived)
    assert retention.sent_body.structure == "text/plain"
    assert (
        retention.arrived_body.structure == "multipart/mixed(text/plain,message/rfc822(text/plain))"
    )
    assert (
        "MIME structure changed (text/plain -> multipart/mixed(text/plain,message/rfc822(text/plain)))"
        in (retention.problems())
    )


def test_mime_structure_and_leaf_hashes() -> None:
    message = EmailMessage()
    message.set_content("Hallo\n")
    message.add_alternative("<p>Hallo</p>\n", subtype="html")
    digest = body_digest(message.as_bytes())
    assert mime_structure(message) == "multipart/alternative(text/plain,text/html)"
    assert digest.structure == "multipart/alternative(text/plain,text/html)"
    assert digest.leaves == (
        hashlib.sha256(b"Hallo\n").hexdigest(),
        hashlib.sha256(b"<p>Hallo</p>\n").hexdigest(),
    )
    assert (
        digest.sha256
        == hashlib.sha256(f"{digest.leaves[0]}\n{digest.leaves[1]}".encode()).hexdigest()
    )
    crlf = message.as_bytes(policy=email.policy.SMTP)
    assert body_digest(crlf) == digest


# -- Hypothesis: retention of generated messages -----------------------------------------------

DOMAINS = ("example.org", "example.com", "candidates.example", "acme.example")
local_parts = st.from_regex(r"[a-z][a-z0-9]{0,8}(?:[._-][a-z0-9]{1,6}){0,2}", fullmatch=True)
# Plain spaces only: the stdlib's own generator folds no-break spaces in display names into
# headers its parser reads back differently, which is not what these properties are about.
names = st.text(
    alphabet=st.characters(categories=("L", "N"), include_characters=" -.'"), max_size=20
)
addresses = st.builds(
    lambda name, local, domain: (name, local, domain), names, local_parts, st.sampled_from(DOMAINS)
)
texts = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "S"), include_characters=" "), max_size=60
)
tokens = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.$-]{0,20}", fullmatch=True)
instants = st.builds(
    lambda when, minutes: when.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes))),
    st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2090, 1, 1)).map(
        lambda d: d.replace(microsecond=0)
    ),
    st.integers(min_value=-720, max_value=840),
)


def _address_list(items: list[tuple[str, str, str]]) -> list[Address]:
    return [Address(display_name=n, username=u, domain=d) for n, u, d in items]


def _msg_id(token: str, domain: str) -> str:
    return f"<{token}@{domain}>"


@st.composite
def header_sets(draw: st.DrawFn) -> dict[str, Any]:
    """The retained headers of a message, as structured values; optional ones may be absent."""
    headers: dict[str, Any] = {
        "From": [draw(addresses)],
        "To": draw(st.lists(addresses, min_size=1, max_size=3)),
        "Subject": draw(texts),
        "Date": draw(instants),
        "Message-ID": [draw(tokens)],
    }
    optional: dict[str, Any] = {
        "Cc": draw(st.lists(addresses, min_size=1, max_size=3)),
        "Reply-To": [draw(addresses)],
        "In-Reply-To": [draw(tokens)],
        "References": draw(st.lists(tokens, min_size=1, max_size=3)),
    }
    for name, value in optional.items():
        if draw(st.booleans()):
            headers[name] = value
    return headers


def build(headers: dict[str, Any], body: str) -> bytes:
    message = EmailMessage()
    for name in RETAINED:
        if name not in headers:
            continue
        value = headers[name]
        if name in ("From", "To", "Cc", "Reply-To"):
            message[name] = _address_list(value)
        elif name == "Date":
            message[name] = email.utils.format_datetime(value)
        elif name in ("Message-ID", "In-Reply-To", "References"):
            message[name] = " ".join(_msg_id(t, "example.org") for t in value)
        else:
            message[name] = value
    message.set_content(body)
    return message.as_bytes(policy=email.policy.SMTP)


def changed(name: str, value: Any) -> Any:
    """``value`` changed so that it means something else."""
    if name in ("From", "To", "Cc", "Reply-To"):
        (display, local, domain), *rest = value
        return [(display, "x" + local, domain), *rest]
    if name == "Date":
        return value + dt.timedelta(minutes=1)
    if name in ("Message-ID", "In-Reply-To", "References"):
        return [*value[:-1], "x" + value[-1]]
    return value + " (2)"


@settings(max_examples=60, deadline=None)
@given(header_sets(), texts)
def test_any_message_compared_with_itself_or_redirected_is_retained(
    headers: dict[str, Any], body: str
) -> None:
    sent = build(headers, body)
    # LF line ends: how a Unix mail store keeps the message.
    for arrived in (sent, redirected(sent), sent.replace(b"\r\n", b"\n")):
        retention = compare_retention(sent, arrived)
        assert (retention.diffs, retention.retained) == ((), True)
    assert set(compare_retention(sent, sent).compared) == set(headers)


@settings(max_examples=60, deadline=None)
@given(header_sets(), texts, st.data())
def test_changing_one_retained_header_names_exactly_that_header(
    headers: dict[str, Any], body: str, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(headers)))
    arrived = build({**headers, name: changed(name, headers[name])}, body)
    diffs = compare_retention(build(headers, body), arrived).diffs
    assert [(d.name, d.kind) for d in diffs] == [(name, "changed")]


@settings(max_examples=60, deadline=None)
@given(header_sets(), texts, st.data())
def test_removing_one_retained_header_names_exactly_that_header(
    headers: dict[str, Any], body: str, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(headers)))
    sent = build(headers, body)
    arrived = build({k: v for k, v in headers.items() if k != name}, body)
    diffs = compare_retention(sent, arrived).diffs
    assert [(d.name, d.kind, d.arrived) for d in diffs] == [(name, "missing", None)]
    assert diffs[0].sent == " ".join(str(parse_message(sent)[name]).split())


# -- Received chain ----------------------------------------------------------------------------


def ts(text: str) -> dt.datetime:
    return email.utils.parsedate_to_datetime(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            "from AM6EUR05FT012.eop-eur05.prod.protection.outlook.com (2001:db8:20b:5c1::203) "
            "by AS8PR01MB7654.eurprd01.prod.outlook.com (2001:db8:20b:4a3::9) with Microsoft SMTP "
            "Server (version=TLS1_2,\r\n cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id "
            "15.20.8207.12 via Frontend\r\n Transport; Thu, 26 Nov 2026 08:30:03 +0000",
            (
                "AM6EUR05FT012.eop-eur05.prod.protection.outlook.com",
                "2001:db8:20b:5c1::203",
                "AS8PR01MB7654.eurprd01.prod.outlook.com",
                "Microsoft SMTP Server",
                "15.20.8207.12",
                None,
                ts("Thu, 26 Nov 2026 08:30:03 +0000"),
                "exchange",
            ),
            id="microsoft",
        ),
        pytest.param(
            "from EX01.acme.example (192.0.2.10) by EX02.acme.example (192.0.2.11) with Microsoft "
            "SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id "
            "15.2.1544.4; Thu, 26 Nov 2026 09:30:03 +0100",
            (
                "EX01.acme.example",
                "192.0.2.10",
                "EX02.acme.example",
                "Microsoft SMTP Server",
                "15.2.1544.4",
                None,
                ts("Thu, 26 Nov 2026 09:30:03 +0100"),
                "exchange",
            ),
            id="exchange-on-premises",
        ),
        pytest.param(
            "by 2002:a05:7300:a4c9:b0:1a2:3b4c:5d6e with SMTP id ab12csp345678dyb;\r\n"
            "        Thu, 26 Nov 2026 00:30:03 -0800 (PST)",
            (
                None,
                None,
                "2002:a05:7300:a4c9:b0:1a2:3b4c:5d6e",
                "SMTP",
                "ab12csp345678dyb",
                None,
                ts("Thu, 26 Nov 2026 00:30:03 -0800"),
                "google",
            ),
            id="gmail-internal",
        ),
        pytest.param(
            "from mail.example.org (mail.example.org. [198.51.100.7])\r\n        by mx.google.com "
            "with ESMTPS id a640c23a62f3a-7a1b2c3d4e5si1.412\r\n        for <jobs@acme.example>\r\n"
            "        (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256);\r\n"
            "        Thu, 26 Nov 2026 00:30:02 -0800 (PST)",
            (
                "mail.example.org",
                "198.51.100.7",
                "mx.google.com",
                "ESMTPS",
                "a640c23a62f3a-7a1b2c3d4e5si1.412",
                "jobs@acme.example",
                ts("Thu, 26 Nov 2026 00:30:02 -0800"),
                "google",
            ),
            id="gmail-mx",
        ),
        pytest.param(
            "from mail.example.org (mail.example.org [198.51.100.7])\r\n\t(using TLSv1.3 with "
            "cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\r\n\t key-exchange X25519 "
            "server-signature RSA-PSS (2048 bits) server-digest SHA256)\r\n\t(No client "
            "certificate requested)\r\n\tby mx.acme.example (Postfix) with ESMTPS id "
            "4ZbQ7k2XyTz9sWp\r\n\tfor <jobs@acme.example>; Thu, 26 Nov 2026 09:30:02 +0100 (CET)",
            (
                "mail.example.org",
                "198.51.100.7",
                "mx.acme.example",
                "ESMTPS",
                "4ZbQ7k2XyTz9sWp",
                "jobs@acme.example",
                ts("Thu, 26 Nov 2026 09:30:02 +0100"),
                "postfix",
            ),
            id="postfix",
        ),
        pytest.param(
            "from mail.example.org ([198.51.100.7]:41234 helo=mail.example.org)\r\n\tby "
            "mx.acme.example with esmtps  (TLS1.3) tls TLS_AES_256_GCM_SHA384\r\n\t(Exim 4.96)\r\n"
            "\t(envelope-from <max.mustermann@example.org>)\r\n\tid 1tFxyz-000AbC-2D\r\n\tfor "
            "jobs@acme.example;\r\n\tThu, 26 Nov 2026 09:30:02 +0100",
            (
                "mail.example.org",
                "198.51.100.7",
                "mx.acme.example",
                "esmtps",
                "1tFxyz-000AbC-2D",
                "jobs@acme.example",
                ts("Thu, 26 Nov 2026 09:30:02 +0100"),
                "exim",
            ),
            id="exim",
        ),
        pytest.param(
            "from mail.example.org (mail.example.org [198.51.100.7])\r\n\tby mx.acme.example "
            "(8.17.1/8.17.1) with ESMTPS id 5AQ8U2pQ012345\r\n\t(version=TLSv1.3 "
            "cipher=TLS_AES_256_GCM_SHA384 bits=256 verify=NOT)\r\n\tfor <jobs@acme.example>; "
            "Thu, 26 Nov 2026 09:30:02 +0100",
            (
                "mail.example.org",
                "198.51.100.7",
                "mx.acme.example",
                "ESMTPS",
                "5AQ8U2pQ012345",
                "jobs@acme.example",
                ts("Thu, 26 Nov 2026 09:30:02 +0100"),
                "sendmail",
            ),
            id="sendmail",
        ),
        pytest.param(
            "from [IPv6:2001:db8::25] (unknown [IPv6:2001:db8::25]) by mail.example.org "
            "(Postfix, from userid 1000) id 4Zb; Thu, 26 Nov 2026 09:30:02 +0100",
            (
                "[IPv6:2001:db8::25]",
                "2001:db8::25",
                "mail.example.org",
                None,
                "4Zb",
                None,
                ts("Thu, 26 Nov 2026 09:30:02 +0100"),
                "postfix",
            ),
            id="ipv6-literal",
        ),
        pytest.param(
            "(qmail 12345 invoked by uid 89); 26 Nov 2026 08:30:03 -0000",
            (None, None, None, None, None, None, ts("26 Nov 2026 08:30:03 +0000"), None),
            id="qmail-no-clauses",
        ),
        pytest.param(
            "from mail.example.org by mx.acme.example with ESMTP id 42 Thu, 26 Nov 2026 08:30:03 +0000",
            (
                "mail.example.org",
                None,
                "mx.acme.example",
                "ESMTP",
                "42",
                None,
                ts("Thu, 26 Nov 2026 08:30:03 +0000"),
                None,
            ),
            id="no-semicolon",
        ),
        pytest.param(
            "garbage (unbalanced ; not a date",
            (None, None, None, None, None, None, None, None),
            id="garbage",
        ),
    ],
)
def test_received_variants_parse_to_exact_fields(value: str, expected: tuple[Any, ...]) -> None:
    hop = parse_hop(value)
    assert (
        hop.from_host,
        hop.from_address,
        hop.by_host,
        hop.with_protocol,
        hop.id,
        hop.for_address,
        hop.timestamp,
        hop.family,
    ) == expected
    assert hop.timestamp is None or hop.timestamp.tzinfo is not None
    assert hop.raw == " ".join(value.split())


def test_the_sandbox_received_format_parses() -> None:
    header = received_header(
        helo="mail.example.org",
        peer="198.51.100.7",
        by="mx.acme.example",
        protocol="ESMTPS",
        recipient="jobs@acme.example",
        ident="ABC123",
        tls="TLSv1.3 with cipher TLS_AES_256_GCM_SHA384",
    )
    (hop,) = parse_received(header + b"Subject: x\r\n\r\n")
    assert (hop.from_host, hop.from_address, hop.by_host, hop.with_protocol) == (
        "mail.example.org",
        "198.51.100.7",
        "mx.acme.example",
        "ESMTPS",
    )
    assert (hop.id, hop.for_address, hop.family) == ("ABC123", "jobs@acme.example", None)
    assert hop.timestamp is not None and hop.timestamp.utcoffset() == dt.timedelta(0)


def test_the_chain_is_oldest_first_with_delays_and_clock_skew() -> None:
    message = (
        received(
            "from c by d with ESMTP id 3; Thu, 26 Nov 2026 09:30:01 +0100",
            "from b by c with ESMTP id 2; Thu, 26 Nov 2026 08:30:10 +0000",
            "from a by b with ESMTP id 1",
            "from z by a with ESMTP id 0; Thu, 26 Nov 2026 09:30:00 +0100",
        )
        + application()
    )
    hops = parse_received(message)
    assert [(h.index, h.id, h.delay_s, h.clock_skew) for h in hops] == [
        (1, "0", None, False),
        (2, "1", None, False),
        (3, "2", None, False),
        (4, "3", -9.0, True),
    ]
    assert total_delay(hops) == 1.0
    assert total_delay(hops[:1]) is None


def test_corpus_chain_has_exact_delays() -> None:
    hops = parse_received((CORPUS / "gmail-auto-forward.eml").read_bytes())
    assert [(h.by_host, h.for_address, h.delay_s, h.family) for h in hops] == [
        ("mail.candidates.example", "jobs@acme.example", None, "postfix"),
        ("mx.google.com", "jobs@acme.example", 1.0, "google"),
        ("2001:db8:7300:a4c9::1", None, 1.0, None),
        ("mail-sor-f69.google.com", "acme-jobs@m.personio.de", 1.0, "google"),
        ("mx.m.personio.de", "acme-jobs@m.personio.de", 1.0, "postfix"),
    ]
    assert total_delay(hops) == 4.0


# -- loops -------------------------------------------------------------------------------------


def test_a_clean_redirect_is_no_loop() -> None:
    verdict = detect_loop(
        redirected(application()), addresses=["jobs@acme.example", "acme-jobs@m.personio.de"]
    )
    assert (verdict.looped, verdict.evidence, verdict.hop_count) == (False, (), 2)
    assert verdict.outcome().status is Status.PASS


def _loop_hop(by: str, recipient: str, n: int) -> str:
    return f"from x.example.org (x.example.org [192.0.2.{n}]) by {by} (Postfix) with ESMTP id Q{n} for <{recipient}>; Thu, 26 Nov 2026 09:30:{n:02d} +0100"


def test_the_same_server_and_recipient_twice_is_a_loop() -> None:
    message = (
        received(
            _loop_hop("mx.acme.example", "jobs@acme.example", 4),
            _loop_hop("mx.acme.example", "recruiting@acme.example", 3),
            _loop_hop("mx.acme.example", "jobs@acme.example", 2),
            _loop_hop("mx.acme.example", "recruiting@acme.example", 1),
        )
        + application()
    )
    verdict = detect_loop(message)
    assert verdict.looped is True
    assert verdict.evidence == (
        "mx.acme.example received it for recruiting@acme.example 2 times (hops 1 and 3)",
        "mx.acme.example received it for jobs@acme.example 2 times (hops 2 and 4)",
    )
    outcome = verdict.outcome()
    assert (outcome.status, outcome.cause) == (Status.FAIL, Cause.LOOP_DETECTED)


def test_a_watched_address_coming_back_through_other_servers_is_a_loop() -> None:
    message = (
        received(
            _loop_hop("mx2.acme.example", "jobs@acme.example", 3),
            _loop_hop("mx.m.personio.de", "acme-jobs@m.personio.de", 2),
            _loop_hop("mx1.acme.example", "jobs@acme.example", 1),
        )
        + application()
    )
    assert detect_loop(message).looped is False
    verdict = detect_loop(message, addresses=["JOBS@acme.example"])
    assert verdict.evidence == (
        "jobs@acme.example became the recipient again after another one (hops 1 and 3)",
    )


def test_a_content_filter_handing_back_to_the_same_server_is_no_loop() -> None:
    message = (
        received(
            "from localhost (localhost [127.0.0.1]) by mx.acme.example (Postfix) with ESMTP id B "
            "for <jobs@acme.example>; Thu, 26 Nov 2026 09:30:03 +0100",
            "from mx.acme.example ([127.0.0.1]) by localhost (amavisd-new, port 10024) with ESMTP "
            "id A1 for <jobs@acme.example>; Thu, 26 Nov 2026 09:30:02 +0100",
            MX_HOP,
        )
        + application()
    )
    assert detect_loop(message).looped is False


def test_repeated_delivered_to_is_a_loop() -> None:
    message = (
        b"Delivered-To: jobs@acme.example\r\nDelivered-To: recruiting@acme.example\r\n"
        b"Delivered-To: jobs@acme.example\r\nX-Original-To: jobs@acme.example\r\n" + application()
    )
    assert detect_loop(message).evidence == ("Delivered-To: jobs@acme.example appears 2 times",)


def test_more_than_25_hops_is_suspicious_and_25_is_not() -> None:
    hops = [
        f"from h{n}.example.org by h{n + 1}.example.org with ESMTP id {n}; Thu, 26 Nov 2026 09:30:00 +0100"
        for n in range(26)
    ]
    assert detect_loop(received(*hops[:25]) + application()).looped is False
    verdict = detect_loop(received(*hops) + application())
    assert (verdict.looped, verdict.hop_count) == (True, 26)
    assert verdict.evidence == (
        "26 Received headers: more than 25 hops suggests a loop (Postfix gives up at 50, Exim at 30)",
    )


# -- Authentication-Results and ARC ------------------------------------------------------------


def test_authentication_results_with_comments_quotes_and_several_headers() -> None:
    message = (
        b"Authentication-Results: mx.m.personio.de 1;\r\n"
        b'\tdkim=fail reason="signature verification failed; body hash" (2048-bit key; unprotected)\r\n'
        b"\t header.d=example.org header.s=mail2026 header.b=Qm9n;\r\n"
        b"\tspf=pass (mx.m.personio.de: domain of x designates 192.0.2.25 as permitted sender)\r\n"
        b'\t smtp.mailfrom="SRS0=Hk3d=TT=example.org=max@acme.example";\r\n'
        b"\tdmarc=pass (p=none dis=none) header.from=example.org\r\n"
        b"Authentication-Results: spf=pass (sender IP is 198.51.100.7)\r\n"
        b" smtp.mailfrom=example.org; dkim=pass (signature was verified)\r\n"
        b" header.d=example.org;dmarc=pass action=none header.from=example.org;compauth=pass reason=100\r\n"
        b"Authentication-Results: mail.example.org; none\r\n" + application()
    )
    results = parse_authentication_results(message)
    assert [(r.authserv_id, r.method, r.result, r.reason, r.properties) for r in results] == [
        (
            "mx.m.personio.de",
            "dkim",
            "fail",
            "signature verification failed; body hash",
            (("header.d", "example.org"), ("header.s", "mail2026"), ("header.b", "Qm9n")),
        ),
        (
            "mx.m.personio.de",
            "spf",
            "pass",
            None,
            (("smtp.mailfrom", "SRS0=Hk3d=TT=example.org=max@acme.example"),),
        ),
        ("mx.m.personio.de", "dmarc", "pass", None, (("header.from", "example.org"),)),
        (None, "spf", "pass", None, (("smtp.mailfrom", "example.org"),)),
        (None, "dkim", "pass", None, (("header.d", "example.org"),)),
        (None, "dmarc", "pass", None, (("action", "none"), ("header.from", "example.org"))),
        (None, "compauth", "pass", "100", ()),
    ]
    assert results[1].get("smtp.mailfrom") == "SRS0=Hk3d=TT=example.org=max@acme.example"
    assert results[1].get("header.d") is None
    assert results[0].describe() == (
        "dkim=fail reason='signature verification failed; body hash' "
        "(header.d=example.org header.s=mail2026 header.b=Qm9n)"
    )


def test_authentication_results_value_edge_cases() -> None:
    assert parse_authentication_results_value("") == ()
    assert parse_authentication_results_value("mx.example.org; none") == ()
    (result,) = parse_authentication_results_value(
        "mx.example.org; dkim / 1 = pass header.i = @x.example"
    )
    assert (result.method, result.result, result.properties) == (
        "dkim",
        "pass",
        (("header.i", "@x.example"),),
    )


def test_arc_chain_of_a_google_group() -> None:
    chain = parse_arc((CORPUS / "google-groups-via.eml").read_bytes())
    assert chain.complete is True
    assert chain.cv == "pass"
    assert chain.problems == ()
    assert [
        (i.i, i.cv, i.seal_domain, i.signature_domain, i.authserv_id) for i in chain.instances
    ] == [
        (1, "none", "google.com", "google.com", "gmr-mx.google.com"),
        (2, "pass", "google.com", "google.com", "gmr-mx.google.com"),
    ]
    assert [(r.method, r.result) for r in chain.instances[0].results] == [
        ("dkim", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    ]
    assert chain.to_dict()["validated"] is False


def test_arc_chain_problems_are_named() -> None:
    seal = "ARC-Seal: i={i}; a=rsa-sha256; cv={cv}; d=example.org; s=arc; b=AAAA\r\n"
    signature = "ARC-Message-Signature: i={i}; a=rsa-sha256; d=example.org; s=arc; bh=A; b=A\r\n"
    results = (
        "ARC-Authentication-Results: i={i}; mx.example.org; spf=pass smtp.mailfrom=example.org\r\n"
    )
    headers = (
        seal.format(i=3, cv="none")
        + signature.format(i=3)
        + results.format(i=3)
        + seal.format(i=1, cv="pass")
        + results.format(i=1)
        + results.format(i=1)
        + "ARC-Seal: i=x; cv=none\r\n"
    )
    chain = parse_arc(headers.encode() + application())
    assert chain.complete is False
    assert chain.problems == (
        "ARC-Seal with an invalid instance tag i='x'",
        "instance i=1 has 0 ARC-Message-Signature header(s)",
        "instance i=1 has 2 ARC-Authentication-Results header(s)",
        "ARC-Seal i=1 must say cv=none, says cv=pass",
        "instance i=2 is missing",
        "ARC-Seal i=3 must say cv=pass or cv=fail, says cv=none",
    )
    assert [i.i for i in chain.instances] == [1, 3]
    empty = parse_arc(application())
    assert (empty.instances, empty.complete, empty.cv) == ((), False, None)


# -- server family -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "family"),
    [
        (b"X-MS-Exchange-Inbox-Rules-Loop: jobs@acme.example\r\n", "exchange"),
        (b"X-MS-Exchange-Organization-AutoForwarded: true\r\n", "exchange"),
        (b"X-Forwarded-To: acme-jobs@m.personio.de\r\n", "google"),
        (
            received(
                PLATFORM_HOP,
                "by 2002:a05:7300:a4c9:b0:1a2:3b4c:5d6e with SMTP id ab12csp; Thu, 26 Nov 2026 00:30:03 -0800",
                MX_HOP,
            ),
            "google",
        ),
        (received(PLATFORM_HOP, MX_HOP), "postfix"),
        (received(PLATFORM_HOP), None),
        (b"X-MS-Exchange-CrossTenant-Id: 0b1c\r\n" + received(PLATFORM_HOP), "exchange"),
        (b"X-Gm-Message-State: AOJu0Y\r\n", "google"),
        (b"", None),
    ],
)
def test_server_family_from_headers_and_hops(headers: bytes, family: str | None) -> None:
    assert server_family(headers + application()) == family


def test_server_family_skips_the_senders_own_server() -> None:
    message = (
        received(
            PLATFORM_HOP,
            "from mail.example.org by mx.acme.example (8.17.1/8.17.1) with ESMTP id 5AQ; Thu, 26 Nov 2026 09:30:02 +0100",
            "from [203.0.113.80] by mail.example.org with esmtpsa (Exim 4.97) id 1tG; Thu, 26 Nov 2026 09:30:01 +0100",
        )
        + application()
    )
    assert server_family(message) == "sendmail"
    unknown_forwarder = (
        received(
            PLATFORM_HOP,
            "from mail.example.org by mx.acme.example with ESMTP id 5AQ; Thu, 26 Nov 2026 09:30:02 +0100",
            "from [203.0.113.80] by mail.example.org with esmtpsa (Exim 4.97) id 1tG; Thu, 26 Nov 2026 09:30:01 +0100",
        )
        + application()
    )
    assert server_family(unknown_forwarder) is None


def test_srs_and_exim_signs_in_the_corpus() -> None:
    verdict = classify_forwarding((CORPUS / "exim-redirect-srs.eml").read_bytes())
    assert verdict.evidence == (
        "redirect: Return-Path <SRS0=Hk3d=TT=candidates.example=mehmet.yilmaz@acme.example> is "
        "SRS-rewritten: a redirect that rewrote the envelope sender (fine)",
        "redirect: the envelope recipient changed from jobs@acme.example (hop 1) to "
        "acme-jobs@m.personio.de (hop 3) while To/Cc still name jobs@acme.example",
    )


# -- forwarding style --------------------------------------------------------------------------

FORWARDER, PLATFORM = "jobs@acme.example", "acme-jobs@m.personio.de"


def test_a_message_without_signs_has_no_style() -> None:
    verdict = classify_forwarding(received(MX_HOP) + application())
    assert (verdict.styles, verdict.evidence, verdict.primary, verdict.faults) == ((), (), None, ())
    assert verdict.outcome().status is Status.PASS


def test_the_sandbox_redirect_is_a_redirect_with_and_without_the_original() -> None:
    arrived = redirected(application())
    assert classify_forwarding(arrived).evidence == (
        "redirect: the envelope recipient changed from jobs@acme.example (hop 1) to "
        "acme-jobs@m.personio.de (hop 2) while To/Cc still name jobs@acme.example",
    )
    verdict = classify_forwarding(arrived, original=application())
    assert verdict.styles == ("redirect",)
    assert verdict.evidence == (
        "redirect: Message-ID <reply-1@example.org> kept: the message was passed on, not re-sent",
        "redirect: the envelope recipient changed from jobs@acme.example (hop 1) to "
        "acme-jobs@m.personio.de (hop 2) while To/Cc still name jobs@acme.example",
    )
    outcome = verdict.outcome("postfix")
    assert (outcome.status, outcome.title, outcome.remediation) == (
        Status.PASS,
        "Redirected with the original headers",
        "",
    )


def test_sandbox_inline_forward() -> None:
    arrived = forwarding.forward_inline(application(), FORWARDER, PLATFORM)
    assert classify_forwarding(arrived).evidence == (
        "forward_inline: the Subject starts with 'Fwd:'",
        "forward_inline: the body quotes the original after a forwarded-message separator (Gmail, Thunderbird)",
    )
    new_id = parse_message(arrived)["Message-ID"]
    verdict = classify_forwarding(arrived, original=application())
    assert verdict.evidence == (
        f"forward_inline: a new message: Message-ID <reply-1@example.org> became {new_id}, From "
        "Max Mustermann <max.mustermann@example.org> became jobs@acme.example",
    )
    outcome = verdict.outcome("exchange")
    assert (outcome.status, outcome.cause, outcome.title) == (
        Status.FAIL,
        Cause.UNKNOWN,
        "Forwarded inline instead of redirected",
    )
    assert outcome.remediation == remediation_for("forward_inline", "exchange")


def test_sandbox_forward_as_attachment() -> None:
    arrived = forwarding.forward_as_attachment(application(), FORWARDER, PLATFORM)
    assert classify_forwarding(arrived).evidence == (
        "forward_attachment: a message/rfc822 part carries a message (Message-ID <reply-1@example.org>)",
        "forward_attachment: the Subject starts with 'Fwd:'",
    )
    assert classify_forwarding(arrived, original=application()).evidence == (
        "forward_attachment: the original arrived attached as message/rfc822",
    )


def test_sandbox_from_rewrite() -> None:
    arrived = forwarding.rewrite_from(application(), FORWARDER)
    assert classify_forwarding(arrived).evidence == (
        "from_rewritten: X-Original-From max.mustermann@example.org differs from From jobs@acme.example",
        "from_rewritten: the From display name 'Max Mustermann via jobs@acme.example' says 'via'",
        "redirect: the message was passed on, not re-sent",
    )
    assert classify_forwarding(arrived, original=application()).evidence == (
        "from_rewritten: From Max Mustermann <max.mustermann@example.org> became "
        '"Max Mustermann via jobs@acme.example" <jobs@acme.example>',
        "redirect: Message-ID <reply-1@example.org> kept: the message was passed on, not re-sent",
    )


def test_sandbox_stripped_headers() -> None:
    arrived = forwarding.strip_headers(application(), ("Reply-To", "In-Reply-To", "References"))
    assert classify_forwarding(arrived).evidence == (
        "headers_stripped: the Subject 'Re: Ihre Bewerbung als Store Manager' is a reply but "
        "In-Reply-To and References are missing",
        "redirect: the message was passed on, not re-sent",
    )
    verdict = classify_forwarding(arrived, original=application())
    assert (
        verdict.evidence[0]
        == "headers_stripped: missing on arrival: Reply-To, In-Reply-To, References"
    )
    assert verdict.styles == ("headers_stripped", "redirect")


def test_what_a_subject_tag_accounts_for_in_a_retention_comparison() -> None:
    sent = application()
    tagged = forwarding.tag_subject(sent, "[EXTERNAL]")
    retention = compare_retention(sent, tagged)
    assert subject_tag(retention.diff("Subject")) == ("[EXTERNAL]", "prefix")
    assert unexplained_changes(retention, ["subject_tagged"]) == []
    # A change no fault names is a problem of its own.
    assert unexplained_changes(retention, ["footer_appended"]) == ["Subject changed"]
    also_reply_to = tagged.replace(b"Reply-To: ", b"Reply-To: other <x@example.net>, ", 1)
    retention = compare_retention(sent, also_reply_to)
    assert unexplained_changes(retention, ["subject_tagged"]) == ["Reply-To changed"]
    assert unexplained_changes(retention, ["forward_attachment"]) == []


def test_one_fix_names_every_address_it_is_for() -> None:
    text = remediation_for(
        "subject_tagged", None, custom_address=["jobs@acme.example", "jobs@retail.acme.example"]
    )
    assert "a transport rule" in text
    assert "Exempt jobs@acme.example and jobs@retail.acme.example from that rule" in text
    exim = remediation_for(
        "subject_tagged", "exim", custom_address=["jobs@acme.example", "jobs@retail.acme.example"]
    )
    assert "$local_part = jobs," in exim  # one local part, named once
    assert remediation_for("subject_tagged", None, custom_address="jobs@acme.example") == (
        remediation_for("subject_tagged", None, custom_address=["jobs@acme.example"])
    )


def test_sandbox_subject_tag() -> None:
    arrived = forwarding.tag_subject(application(), "[EXTERNAL]")
    for original in (None, application()):
        assert classify_forwarding(arrived, original=original).styles == (
            "subject_tagged",
            "redirect",
        )
    assert classify_forwarding(arrived).evidence[0] == (
        "subject_tagged: the Subject starts with the tag '[EXTERNAL]'"
    )
    verdict = classify_forwarding(arrived, original=application())
    assert verdict.evidence[0] == "subject_tagged: '[EXTERNAL]' was put in front of the Subject"
    outcome = verdict.outcome("exchange")
    assert (outcome.status, outcome.cause, outcome.title) == (
        Status.WARN,
        None,
        "Subject tagged on the way",
    )


def test_sandbox_footer() -> None:
    footer = "CAUTION: This email originated from outside of the organization."
    arrived = forwarding.append_footer(application(), footer)
    assert classify_forwarding(arrived).evidence[0] == (
        "footer_appended: the body carries the disclaimer 'this email originated from outside'"
    )
    verdict = classify_forwarding(arrived, original=application())
    assert verdict.styles == ("footer_appended", "redirect")
    assert verdict.evidence[0] == f"footer_appended: the body text grew at the end: {footer!r}"


def test_a_reply_quoting_an_outlook_block_is_not_a_forward() -> None:
    message = EmailMessage()
    message["From"] = "Max <max.mustermann@example.org>"
    message["To"] = "jobs@acme.example"
    message["Subject"] = "AW: Einladung"
    message["Message-ID"] = "<r@example.org>"
    message["Date"] = "Thu, 26 Nov 2026 09:30:00 +0100"
    message["In-Reply-To"] = "<i@acme.example>"
    message.set_content(
        "Gerne.\n\nVon: Acme Jobs <jobs@acme.example>\nGesendet: Mittwoch, 25. November 2026\n"
        "An: Max\nBetreff: Einladung\n\nHallo Max\n"
    )
    assert classify_forwarding(message.as_bytes()).styles == ()
    message.replace_header("Subject", "WG: Einladung")
    assert classify_forwarding(message.as_bytes()).evidence == (
        "forward_inline: the Subject starts with 'WG:'",
        "forward_inline: the body quotes the original in an Outlook header block (Von:/Gesendet:/…/Betreff:)",
    )


def test_an_html_only_forward_is_read_without_markup() -> None:
    message = EmailMessage()
    message["From"] = "jobs@acme.example"
    message["Subject"] = "Re: x"
    message.set_content(
        "<div>-----Original Message-----<br><b>From:</b> Max<br><b>Sent:</b> Thursday<br>"
        "<b>To:</b> Jobs<br><b>Subject:</b> x</div><script>alert(1)</script>",
        subtype="html",
    )
    assert body_text(message) == (
        "-----Original Message-----\nFrom: Max\nSent: Thursday\nTo: Jobs\nSubject: x\n \n"
    )


def test_resent_headers_and_gmail_forwarding_are_redirect_signs() -> None:
    resent = (
        b"Resent-From: jobs@acme.example\r\nResent-To: acme-jobs@m.personio.de\r\n" + application()
    )
    assert classify_forwarding(resent).evidence == (
        "redirect: Resent-From, Resent-To: re-sent by a mail client with the headers kept",
    )
    gmail = (
        b"Return-Path: <jobs+caf_=acme-jobs=m.personio.de@acme.example>\r\n"
        b"X-Forwarded-To: acme-jobs@m.personio.de\r\n" + application()
    )
    assert classify_forwarding(gmail).evidence == (
        "redirect: X-Forwarded-To: acme-jobs@m.personio.de (Gmail automatic forwarding keeps the headers)",
        "redirect: Return-Path <jobs+caf_=acme-jobs=m.personio.de@acme.example> is Gmail's "
        "forwarding envelope: a redirect that rewrote the envelope sender (fine)",
    )


def test_styles_are_ordered_gravest_first() -> None:
    assert STYLES == (
        "forward_inline",
        "forward_attachment",
        "from_rewritten",
        "headers_stripped",
        "subject_tagged",
        "footer_appended",
        "redirect",
    )


# -- the corpus --------------------------------------------------------------------------------


def test_every_corpus_message_is_labelled() -> None:
    assert sorted(LABELS) == sorted(p.name for p in CORPUS.glob("*.eml"))
    assert len(LABELS) >= 12


@pytest.mark.parametrize("name", sorted(LABELS))
def test_corpus_message_is_classified_as_labelled(name: str) -> None:
    label = LABELS[name]
    arrived = (CORPUS / name).read_bytes()
    original = (CORPUS / label["original"]).read_bytes() if "original" in label else None
    verdict = classify_forwarding(arrived, original=original)
    assert (list(verdict.styles), verdict.primary, server_family(arrived)) == (
        label["styles"],
        label["styles"][0],
        label["family"],
    )
    # The signs alone must lead to the same styles as the precise comparison.
    assert list(classify_forwarding(arrived).styles) == label["styles"]
    assert detect_loop(arrived, addresses=[FORWARDER, PLATFORM]).looped is False


@pytest.mark.parametrize("name", sorted(n for n, label in LABELS.items() if "original" in label))
def test_corpus_retention_matches_the_styles(name: str) -> None:
    label = LABELS[name]
    retention = compare_retention(
        (CORPUS / label["original"]).read_bytes(), (CORPUS / name).read_bytes()
    )
    assert retention.retained is (label["styles"] == ["redirect"])


def test_corpus_retention_of_the_stripped_and_tagged_messages() -> None:
    stripped = compare_retention(
        (CORPUS / "originals/anna-schmidt.eml").read_bytes(),
        (CORPUS / "postfix-header-checks-stripped.eml").read_bytes(),
    )
    assert [(d.name, d.kind, d.arrived) for d in stripped.diffs] == [
        ("In-Reply-To", "missing", None),
        ("References", "missing", None),
    ]
    assert stripped.body_changed is False
    tagged = compare_retention(
        (CORPUS / "originals/lena-weber.eml").read_bytes(),
        (CORPUS / "exim-forward-subject-tag.eml").read_bytes(),
    )
    assert tagged.diffs == (
        HeaderDiff(
            "Subject",
            "changed",
            "Bewerbung Teamleitung Logistik (Ref. 2026-118)",
            "[EXT] Bewerbung Teamleitung Logistik (Ref. 2026-118)",
        ),
    )


DOCUMENTATION_NETWORKS = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "127.0.0.0/8", "2001:db8::/32")
]
# Example domains, and the mail infrastructure names of the providers whose Received chains the
# corpus reproduces (their host names are how the server family is recognised).
ALLOWED_DOMAINS = (
    "example.org",
    "example.com",
    "acme.example",
    "candidates.example",
    "m.personio.de",
    "outlook.com",
    "microsoft.com",
    "google.com",
    "gmail.com",
    "smtpclient.apple",
)


@pytest.mark.parametrize("path", sorted(CORPUS.rglob("*.eml")), ids=lambda p: p.name)
def test_corpus_files_are_crlf_with_documentation_addresses_only(path: Path) -> None:
    data = path.read_bytes()
    assert b"\n" not in data.replace(b"\r\n", b"")
    text = data.decode("utf-8")
    for candidate in re.findall(r"[0-9A-Fa-f:.]*[:.][0-9A-Fa-f:.]+", text):
        try:
            address = ipaddress.ip_address(candidate.strip(".:"))
        except ValueError:
            continue
        assert any(address in net for net in DOCUMENTATION_NETWORKS), candidate
    for domain in re.findall(r"\b(?:[A-Za-z0-9-]+\.)+(?:com|org|net|de|example|apple|io)\b", text):
        assert domain.lower().endswith(ALLOWED_DOMAINS), domain


# -- remediation -------------------------------------------------------------------------------


def test_every_style_has_a_generic_fix_and_every_family_resolves() -> None:
    fixes = load_forwarding_fixes()
    assert sorted(fixes) == sorted(STYLES)
    for style in STYLES:
        assert "generic" in fixes[style]
        for family in (*FAMILIES, None, "qmail"):
            text = remediation_for(style, family)
            assert text and "{" not in text and "}" not in text
    assert remediation_for("forward_inline", "qmail") == remediation_for("forward_inline", None)
    assert remediation_for("forward_attachment", "exchange") == remediation_for(
        "forward_inline", "exchange"
    )


@pytest.mark.parametrize(
    ("style", "family", "phrases"),
    [
        (
            "forward_inline",
            "exchange",
            (
                '"Redirect the message to" acme-jobs@m.personio.de',
                "Set-Mailbox -Identity jobs@acme.example -ForwardingSmtpAddress smtp:acme-jobs@m.personio.de -DeliverToMailboxAndForward $true",
                "550 5.7.520",
                '"On - Forwarding is enabled"',
            ),
        ),
        (
            "forward_inline",
            "google",
            (
                "Admin console > Apps > Google Workspace > Gmail > Default routing",
                '"Also deliver to"',
                '"Change envelope recipient"',
            ),
        ),
        (
            "forward_inline",
            "postfix",
            (
                '"jobs@acme.example jobs@acme.example, acme-jobs@m.personio.de"',
                "postmap /etc/postfix/virtual",
            ),
        ),
        (
            "forward_inline",
            "exim",
            (
                "data = jobs, acme-jobs@m.personio.de",
                "unseen deliver acme-jobs@m.personio.de",
                "domains = acme.example",
            ),
        ),
        ("forward_inline", "sendmail", ('"jobs: \\jobs, acme-jobs@m.personio.de"', "newaliases")),
        (
            "footer_appended",
            "exchange",
            (
                '"Apply a disclaimer to the message"',
                '"Except if the recipient is" jobs@acme.example',
                "DKIM",
            ),
        ),
        ("headers_stripped", "postfix", ('"/^(References|In-Reply-To):/ IGNORE"',)),
    ],
)
def test_fixes_name_the_concrete_setting(style: str, family: str, phrases: tuple[str, ...]) -> None:
    text = remediation_for(
        style, family, custom_address="jobs@acme.example", inbound_address="acme-jobs@m.personio.de"
    )
    for phrase in phrases:
        assert phrase in text


def test_fixes_use_the_accounts_addresses_and_refuse_unknown_styles() -> None:
    text = remediation_for(
        "forward_inline",
        "postfix",
        custom_address="karriere@beta.example",
        inbound_address="beta@m.personio.de",
    )
    assert '"karriere@beta.example karriere@beta.example, beta@m.personio.de"' in text
    with pytest.raises(ValueError, match="unknown forwarding style 'bounce'"):
        remediation_for("bounce", "postfix")


# -- printable and the whole analysis ----------------------------------------------------------


def test_printable_strips_control_characters_and_bidi_overrides() -> None:
    assert printable("a\x1b[2Jb\tc\r\nd\x00\x7f\x9b\u202ee\u2028f\udcff") == "a[2Jb c  de f\ufffd"
    assert printable("<script>Grüße</script>") == "<script>Grüße</script>"


def test_analysis_of_a_tagged_message_with_its_original() -> None:
    analysis = analyse_headers(
        (CORPUS / "m365-external-tag-disclaimer.eml").read_bytes(),
        original=(CORPUS / "originals/max-mustermann.eml").read_bytes(),
    )
    assert (analysis.family, analysis.verdict.styles, analysis.failed) == (
        "exchange",
        ("subject_tagged", "footer_appended", "redirect"),
        True,
    )
    assert analysis.custom_address is not None  # the address the message was sent to
    assert analysis.remediation == remediation_for(
        "subject_tagged",
        "exchange",
        custom_address=analysis.custom_address,
        inbound_address=analysis.inbound_address,
    )
    assert analysis.custom_address in analysis.remediation
    assert analysis.total_delay_s == 5.0
    assert analysis.retention is not None and analysis.retention.problems() == [
        "Subject changed ('Re: Ihre Bewerbung als Store Manager' -> "
        "'[EXTERNAL] Re: Ihre Bewerbung als Store Manager')",
        "body changed",
    ]
    lines = analysis.lines()
    assert lines[0] == "Total delay: 5.0 s over 5 hop(s)"
    assert "ARC: 1 instance(s), complete, cv=none (structure only; no signature verified)" in lines
    assert lines[-1] == "Verdict: FAIL"


def test_the_fix_names_the_addresses_the_headers_show() -> None:
    arrived = b"Delivered-To: beta-jobs@m.personio.de\r\n" + forwarding.tag_subject(
        application(To="karriere@beta.example"), "[EXTERNAL]"
    )
    analysis = analyse_headers(arrived)
    assert (analysis.custom_address, analysis.inbound_address) == (
        "karriere@beta.example",
        "beta-jobs@m.personio.de",
    )
    assert analysis.remediation == remediation_for(
        "subject_tagged",
        None,
        custom_address="karriere@beta.example",
        inbound_address="beta-jobs@m.personio.de",
    )
    assert "karriere@beta.example" in analysis.remediation


def test_redirect_addresses_of_a_forward_and_of_a_bare_message() -> None:
    forward = (CORPUS / "exchange-inline-forward.eml").read_bytes()
    assert redirect_addresses(forward, forward) == ("jobs@acme.example", "acme-jobs@m.personio.de")
    redirect = redirected(application())
    assert redirect_addresses(redirect, redirect) == (
        "jobs@acme.example",
        "acme-jobs@m.personio.de",
    )
    assert redirect_addresses(b"Subject: x\r\n\r\n", b"Subject: x\r\n\r\n") == (None, None)


def test_the_analysis_watches_the_redirect_addresses_for_loops() -> None:
    message = (
        received(
            _loop_hop("mx2.acme.example", "jobs@acme.example", 3),
            _loop_hop("mx.m.personio.de", "acme-jobs@m.personio.de", 2),
            _loop_hop("mx1.acme.example", "jobs@acme.example", 1),
        )
        + application()
    )
    assert analyse_headers(message).loop.evidence == (
        "jobs@acme.example became the recipient again after another one (hops 1 and 3)",
    )
    assert analyse_headers(message, addresses=["nobody@acme.example"]).loop.looped is False
