"""diagnostics.parse.headers.received: Received headers as servers write them, and the chain's delays."""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
from typing import Any

import pytest

from diagnostics.parse.headers.received import parse_hop, parse_received, total_delay
from diagnostics.sandbox.smtpserver import received_header
from tests.parse.headers.samples import (
    CORPUS,
    application,
    received,
)


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
