"""diagnostics.parse.headers.forwarding: redirect or forward, on the sandbox's forwarding faults,
and the fix for each style and server family."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from diagnostics.findings import Cause, Status
from diagnostics.parse.headers.forwarding import (
    STYLES,
    body_text,
    classify_forwarding,
    load_forwarding_fixes,
    remediation_for,
    subject_tag,
    unexplained_changes,
)
from diagnostics.parse.headers.message import parse_message
from diagnostics.parse.headers.received import FAMILIES
from diagnostics.parse.headers.retention import (
    compare_retention,
)
from diagnostics.sandbox import forwarding
from tests.parse.headers.samples import (
    FORWARDER,
    MX_HOP,
    PLATFORM,
    application,
    received,
    redirected,
)


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
        "redirect: X-Forwarded-To: acme-jobs@m.personio.de (an automatic forward that keeps the headers)",
        "redirect: Return-Path <jobs+caf_=acme-jobs=m.personio.de@acme.example> is Gmail's "
        "forwarding envelope: a redirect that rewrote the envelope sender (fine)",
    )


def test_styles_are_ordered_gravest_first() -> None:
    assert STYLES == (
        "forward_inline",
        "forward_attachment",
        "from_rewritten",
        "headers_stripped",
        "mailing_list",
        "subject_tagged",
        "footer_appended",
        "redirect",
    )


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
