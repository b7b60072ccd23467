"""diagnostics.parse.headers.loops: loops in the Received chain and the delivery headers."""

from __future__ import annotations

from diagnostics.findings import Cause, Status
from diagnostics.parse.headers.loops import detect_loop
from tests.parse.headers.samples import (
    MX_HOP,
    application,
    loop_hop,
    received,
    redirected,
)


def test_a_clean_redirect_is_no_loop() -> None:
    verdict = detect_loop(
        redirected(application()), addresses=["jobs@acme.example", "acme-jobs@m.personio.de"]
    )
    assert (verdict.looped, verdict.evidence, verdict.hop_count) == (False, (), 2)
    assert verdict.outcome().status is Status.PASS


def test_the_same_server_and_recipient_twice_is_a_loop() -> None:
    message = (
        received(
            loop_hop("mx.acme.example", "jobs@acme.example", 4),
            loop_hop("mx.acme.example", "recruiting@acme.example", 3),
            loop_hop("mx.acme.example", "jobs@acme.example", 2),
            loop_hop("mx.acme.example", "recruiting@acme.example", 1),
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
            loop_hop("mx2.acme.example", "jobs@acme.example", 3),
            loop_hop("mx.m.personio.de", "acme-jobs@m.personio.de", 2),
            loop_hop("mx1.acme.example", "jobs@acme.example", 1),
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
