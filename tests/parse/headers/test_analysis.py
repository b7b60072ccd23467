"""diagnostics.parse.headers.analysis: every analysis of one message at once."""

from __future__ import annotations

from diagnostics.parse.headers.analysis import analyse_headers, redirect_addresses
from diagnostics.parse.headers.forwarding import (
    remediation_for,
)
from diagnostics.sandbox import forwarding
from tests.parse.headers.samples import (
    CORPUS,
    application,
    loop_hop,
    received,
    redirected,
)


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
            loop_hop("mx2.acme.example", "jobs@acme.example", 3),
            loop_hop("mx.m.personio.de", "acme-jobs@m.personio.de", 2),
            loop_hop("mx1.acme.example", "jobs@acme.example", 1),
        )
        + application()
    )
    assert analyse_headers(message).loop.evidence == (
        "jobs@acme.example became the recipient again after another one (hops 1 and 3)",
    )
    assert analyse_headers(message, addresses=["nobody@acme.example"]).loop.looped is False
