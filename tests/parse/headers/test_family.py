"""diagnostics.parse.headers.family: the server family that passed the message on."""

from __future__ import annotations

import pytest

from diagnostics.parse.headers.family import server_family
from diagnostics.parse.headers.forwarding import (
    classify_forwarding,
)
from tests.parse.headers.samples import (
    CORPUS,
    MX_HOP,
    PLATFORM_HOP,
    application,
    received,
)


@pytest.mark.parametrize(
    ("headers", "family"),
    [
        (b"X-MS-Exchange-Inbox-Rules-Loop: jobs@acme.example\r\n", "exchange"),
        (b"X-MS-Exchange-Organization-AutoForwarded: true\r\n", "exchange"),
        (b"X-Forwarded-To: acme-jobs@m.personio.de\r\nX-Gm-Message-State: AOJu0Y\r\n", "google"),
        # qmail's aliases write X-Forwarded-To too: without a Gmail sign it names no family.
        (b"X-Forwarded-To: acme-jobs@m.personio.de\r\n", None),
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
