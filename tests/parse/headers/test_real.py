"""Real messages forwarded, redirected, redistributed or returned by real systems
(fixtures/messages/real/, from mail programs' published test data; labelled before the
classification ran on them).

Measured on the 10 messages gathered first, before mailing lists, returned reports and the
forwarding system's family were handled: style 2 of 10, family 8 of 9. After: 10 of 10 and 9
of 9. On the 4 messages gathered and labelled after that change: style 4 of 4, family 4 of 4
(the code before the change: 2 of 4 and 2 of 4). Each is pinned, so a change either way shows.
No message comes from sisimai's set-of-emails, which is part of an outside yardstick.
"""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

import pytest

from diagnostics.parse.headers.family import server_family
from diagnostics.parse.headers.forwarding import classify_forwarding, remediation_for
from tests.parse.headers.samples import CORPUS, REAL


def _read(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_every_real_message_is_labelled_with_its_source() -> None:
    assert sorted(REAL) == sorted(f"real/{p.name}" for p in (CORPUS / "real").glob("*.eml"))
    assert len(REAL) >= 14
    for name, label in REAL.items():
        assert label["source"].startswith("https://github.com/"), name
        assert "sisimai" not in label["source"], name
        assert label["set"] in ("before", "after"), name


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_message_is_classified_as_labelled(name: str) -> None:
    label = REAL[name]
    data = _read(name)
    assert list(classify_forwarding(data).styles) == label["styles"]
    if "family" in label:
        assert server_family(data) == label["family"]


def test_accuracy_on_the_real_messages() -> None:
    styles = sum(
        list(classify_forwarding(_read(n)).styles) == lab["styles"] for n, lab in REAL.items()
    )
    with_family = {n: lab for n, lab in REAL.items() if "family" in lab}
    families = sum(server_family(_read(n)) == lab["family"] for n, lab in with_family.items())
    assert (styles, len(REAL), families, len(with_family)) == (14, 14, 13, 13)


def test_a_whole_body_message_rfc822_is_a_forward_as_attachment() -> None:
    real = _read("real/lkml-vger-gmail-sender.eml")
    outer = EmailMessage()
    outer["From"] = "jobs@acme.example"
    outer["To"] = "acme-jobs@m.personio.de"
    outer["Subject"] = "Fwd: Re: [PATCH 28/44] drivers/spi: Remove unnecessary semicolons"
    outer["Message-ID"] = "<fwd-1@acme.example>"
    outer["Date"] = "Thu, 26 Nov 2026 09:30:00 +0100"
    outer.set_content(email.message_from_bytes(real, policy=email.policy.default))
    verdict = classify_forwarding(outer.as_bytes())
    assert verdict.primary == "forward_attachment"
    assert verdict.evidence[0].startswith(
        "forward_attachment: the whole body is a message/rfc822 message (Message-ID "
        "<20101115035742.GA19965@angua.secretlab.ca>)"
    )


def test_a_list_server_is_the_family_not_the_senders_microsoft_hops() -> None:
    # Exchange (mapi, Microsoft SMTP Server) wrote the oldest hops; SourceForge's Mailman on
    # Exim redistributed it.
    data = _read("real/sourceforge-mailman-intel-exchange.eml")
    assert server_family(data) == "exim"
    data = _read("real/linuxppc-ozlabs-mailman-exchange.eml")
    assert server_family(data) == "postfix"
    # kernel.org's Postfix passed it on after vger's list expansion; Gmail sent it.
    assert server_family(_read("real/kernel-org-linux-man-gmail.eml")) == "postfix"


def test_a_forward_takes_the_family_of_the_system_that_wrote_it() -> None:
    # Gmail's web client forwarded it; Postfix servers delivered it.
    assert server_family(_read("real/gmail-web-fwd-signed.eml")) == "google"


QMAIL_ALIAS = (
    # A qmail .qmail alias passing a message on, as qmail writes it (qmail-local adds the
    # Delivered-To line, qmail-queue the "invoked by alias" Received line); an X-Forwarded-To
    # header from the sender's side does not make it Gmail.
    b"Return-Path: <erika@candidate.example>\r\n"
    b"Delivered-To: jobs@acme.example\r\n"
    b"Received: (qmail 28843 invoked by alias); 26 Nov 2026 08:12:01 -0000\r\n"
    b"Received: from mail.candidate.example (198.51.100.7)\r\n"
    b"  by mx.acme.example with SMTP; 26 Nov 2026 08:12:01 -0000\r\n"
    b"X-Forwarded-To: acme-jobs@m.personio.de\r\n"
    b"X-Forwarded-For: jobs@acme.example acme-jobs@m.personio.de\r\n"
    b"From: Erika Mustermann <erika@candidate.example>\r\n"
    b"To: jobs@acme.example\r\n"
    b"Subject: Bewerbung\r\n"
    b"Date: Thu, 26 Nov 2026 09:11:58 +0100\r\n"
    b"Message-ID: <app-1@candidate.example>\r\n"
    b"\r\n"
    b"Guten Tag\r\n"
)


def test_x_forwarded_to_of_a_qmail_alias_is_not_gmail() -> None:
    assert server_family(QMAIL_ALIAS) is None
    assert classify_forwarding(QMAIL_ALIAS).styles == ("redirect",)


@pytest.mark.parametrize(
    "name",
    [
        "real/freebsd-mlmmj-post-denied.eml",
        "real/postfix-delay-warning-resent.eml",
    ],
)
def test_a_returned_message_in_a_report_is_not_a_forward(name: str) -> None:
    assert "forward_attachment" not in classify_forwarding(_read(name)).styles


def test_a_mailing_list_has_a_style_and_a_fix_of_its_own() -> None:
    verdict = classify_forwarding(_read("real/lkml-vger-fsdevel-redhat.eml"))
    assert verdict.styles == ("mailing_list",)
    assert verdict.evidence == (
        "mailing_list: List-Id: <linux-fsdevel.vger.kernel.org>, X-Mailing-List: "
        "linux-fsdevel@vger.kernel.org: a mailing list redistributed it",
        "mailing_list: Precedence: bulk",
    )
    outcome = verdict.outcome(custom_address="jobs@acme.example")
    assert (outcome.status.value, outcome.title) == (
        "warn",
        "Redistributed by a mailing list instead of redirected",
    )
    assert outcome.remediation is not None
    assert outcome.remediation.startswith("A mailing list passed the message on")
    assert "must not be what forwards to" in outcome.remediation
    assert remediation_for("mailing_list", "google").startswith("A Google Group passed")
    assert remediation_for("mailing_list", "exim") == remediation_for("mailing_list", None)
