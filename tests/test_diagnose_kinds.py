"""``maildiag diagnose`` on the kinds of mistakes a real bounce collection showed: nothing
extracted from a bounce whose MIME boundary is broken, a less specific signal winning over a
more specific one, text that is not the error (the bounce's own headers, the returned message)
matched by a rule, and the same bounce read differently alone, in a folder, in an mbox and on
standard input. Each input is a complete message laid out as the MTA named writes it; the
addresses and hosts are example ones.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from diagnostics.cli import main
from diagnostics.diagnose import (
    RuleTable,
    diagnose,
    extract_bounce_failure,
    extract_failure,
    parse_bounce_message,
    parse_rules,
)
from diagnostics.diagnose.inputs import read_inputs
from diagnostics.findings import Cause

# -- a self-contained rule table ------------------------------------------------------------------
# Where a kind shows only when the wording has no rule of its own, the engine is tested with a
# small table shaped like the packaged one, so that the test does not depend on its wording.


def _table(*rules: dict[str, Any]) -> RuleTable:
    return parse_rules(
        {
            "generic_enhanced": ["*.0.0", "*.7.0", "*.7.1", "*.5.0", "*.1.0", "*.3.0"],
            "causes": {
                c.value: {"explanation": "e", "remediation": "r", "who_acts": "it"} for c in Cause
            },
            "rules": list(rules),
        }
    )


SMALL = _table(
    {"id": "auth.mechanism", "enhanced": ["5.7.9"], "cause": "auth_mechanism", "confidence": 0.9},
    {"id": "recipient.enhanced", "enhanced": ["*.1.1"], "cause": "recipient_unknown", "confidence": 0.9},
    {"id": "recipient.disabled", "enhanced": ["5.2.1"], "cause": "recipient_unknown", "confidence": 0.9},
    {"id": "mailbox.enhanced", "enhanced": ["*.2.2"], "cause": "mailbox_full", "confidence": 0.9},
    {"id": "client.wording", "text": "IP address .{0,40}blacklisted", "cause": "client_ip_rejected", "confidence": 0.9},
    {"id": "policy.wording", "text": "\\bDKIM\\b|policy reasons|blocked because its content", "cause": "policy_rejected", "confidence": 0.85},
    {"id": "policy.generic", "enhanced": ["5.7.1"], "cause": "policy_rejected", "confidence": 0.5},
    {"id": "rate.wording", "text": "receiving mail at a rate", "cause": "rate_limited", "confidence": 0.85},
    {"id": "connect.gmail", "text": "did not accept our requests to connect", "cause": "connection_refused", "confidence": 0.8},
    {"id": "mailbox.code-552", "code": "552", "cause": "mailbox_full", "confidence": 0.4},
    {"id": "auth.code-530", "code": "530", "cause": "auth_failed", "confidence": 0.4},
    {"id": "temporary.code-4xx", "code": "4??", "cause": "temporary_failure", "confidence": 0.5},
)  # fmt: skip


# -- real-world layouts -------------------------------------------------------------------------

ORIGINAL = (
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=acme.example; s=s1;\n"
    "        h=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\n"
    "        b=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZQ==\n"
    "Received-SPF: pass (google.com: domain of jobs@acme.example designates 192.0.2.44 as "
    "permitted sender)\n"
    "Authentication-Results: mx.google.com; dkim=pass header.i=@acme.example; spf=pass; dmarc=pass\n"
    "From: Acme Recruiting <jobs@acme.example>\n"
    "To: max.mustermann@candidates.example\n"
    "Subject: Your application: DKIM and SPF test\n"
    "Date: Tue, 14 May 2024 10:02:10 +0200\n"
    "Message-ID: <20240514080211.1234@mail.acme.example>\n"
)


def gmail_dsn(
    *,
    header_boundary: str,
    body_boundary: str,
    human: str,
    status: str,
    diagnostic: str,
) -> bytes:
    """Gmail's multipart/report layout (text part, delivery-status, the original's headers)."""
    b = body_boundary
    return (
        "Delivered-To: jobs@acme.example\n"
        "Return-Path: <>\n"
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=googlemail.com; s=20230601;\n"
        "        h=to:from:subject:message-id:date:mime-version; bh=frcCV1k9oG9oKj3dpUqdJg1Pxo=;\n"
        "        b=QmxvY2tlZCBieSBETUFSQyBwb2xpY3k7IHNwYW0gZmlsdGVy\n"
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n"
        "To: jobs@acme.example\n"
        "Auto-Submitted: auto-replied\n"
        "Subject: Delivery Status Notification (Failure)\n"
        "Date: Tue, 14 May 2024 01:02:16 -0700 (PDT)\n"
        "Message-ID: <6643a1b8.050a0220.1234.abcdSMTPIN_ADDED_BROKEN@mx.google.com>\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/report; boundary="{header_boundary}"; '
        "report-type=delivery-status\n"
        "\n"
        f"--{b}\n"
        'Content-Type: text/plain; charset="UTF-8"\n'
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
        f"{human}\n"
        f"--{b}\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; googlemail.com\n"
        "Received-From-MTA: dns; jobs@acme.example\n"
        "Arrival-Date: Tue, 14 May 2024 01:02:13 -0700 (PDT)\n"
        "\n"
        "Final-Recipient: rfc822; max.mustermann@candidates.example\n"
        "Action: failed\n"
        f"Status: {status}\n"
        "Remote-MTA: dns; mx.candidates.example. (192.0.2.80, the server for the domain\n"
        " candidates.example.)\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n"
        "Last-Attempt-Date: Tue, 14 May 2024 01:02:16 -0700 (PDT)\n"
        "\n"
        f"--{b}\n"
        "Content-Type: text/rfc822-headers\n"
        "\n"
        f"{ORIGINAL}"
        f"--{b}--\n"
    ).encode()


GMAIL_NOT_FOUND_TEXT = (
    "\n** Address not found **\n\n"
    "Your message wasn't delivered to max.mustermann@candidates.example because the address "
    "couldn=E2=80=99t be found, or is unable to receive mail.\n\n"
    "Learn more here: https://support.google.com/mail/?p=3DNoSuchUser\n\n"
    "The response was:\n\n"
    "550 5.1.1 The email account that you tried to reach does not exist. Please try doubl=\n"
    "e-checking the recipient's email address for typos or unnecessary spaces. https:/=\n"
    "/support.google.com/mail/?p=3DNoSuchUser 2adb3069b0e04-51f0a1b2c3dsi1234567e87.123 =\n"
    "- gsmtp\n"
)
GMAIL_NOT_FOUND_DIAGNOSTIC = (
    "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
    " 550-5.1.1 double-checking the recipient's email address for typos or\n"
    " 550-5.1.1 unnecessary spaces. For more information, go to\n"
    " 550 5.1.1  https://support.google.com/mail/?p=NoSuchUser 2adb3069b0e04-51f0a1b2c3dsi - gsmtp"
)


def postfix_dsn(
    *, status: str, diagnostic: str, said: str, content_type: str | None = None
) -> bytes:
    """Postfix's bounce(8) layout: notification, delivery-status, returned headers."""
    boundary = "4VfK2t0xYz.1715673735/mail.acme.example"
    declared = content_type or (
        f'multipart/report; report-type=delivery-status;\n\tboundary="{boundary}"'
    )
    return (
        "Return-Path: <>\n"
        "Received: by mail.acme.example (Postfix) id 4VfK2t0xYz; Tue, 14 May 2024 10:02:15 +0200 (CEST)\n"
        "Date: Tue, 14 May 2024 10:02:15 +0200 (CEST)\n"
        "From: MAILER-DAEMON@mail.acme.example (Mail Delivery System)\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "To: jobs@acme.example\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        f"Content-Type: {declared}\n"
        "Content-Transfer-Encoding: 8bit\n"
        "Message-Id: <20240514080215.5C1E22A0B3@mail.acme.example>\n"
        "\n"
        "This is a MIME-encapsulated message.\n"
        "\n"
        f"--{boundary}\n"
        "Content-Description: Notification\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "This is the mail system at host mail.acme.example.\n"
        "\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients. It's attached below.\n"
        "\n"
        "For further assistance, please send mail to postmaster.\n"
        "\n"
        "If you do so, please include this problem report. You can\n"
        "delete your own text from the attached returned message.\n"
        "\n"
        "                   The mail system\n"
        "\n"
        f"<max.mustermann@candidates.example>: host mx.candidates.example[192.0.2.80] said:\n"
        f"    {said}\n"
        "\n"
        f"--{boundary}\n"
        "Content-Description: Delivery report\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; mail.acme.example\n"
        "X-Postfix-Queue-ID: 4VfK2t0xYz\n"
        "X-Postfix-Sender: rfc822; jobs@acme.example\n"
        "Arrival-Date: Tue, 14 May 2024 10:02:11 +0200 (CEST)\n"
        "\n"
        "Final-Recipient: rfc822; max.mustermann@candidates.example\n"
        "Original-Recipient: rfc822;max.mustermann@candidates.example\n"
        "Action: failed\n"
        f"Status: {status}\n"
        "Remote-MTA: dns; mx.candidates.example\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n"
        "\n"
        f"--{boundary}\n"
        "Content-Description: Undelivered Message Headers\n"
        "Content-Type: text/rfc822-headers\n"
        "\n"
        f"{ORIGINAL}"
        "\n"
        f"--{boundary}--\n"
    ).encode()


def exim_bounce(failure: str) -> str:
    """Exim's free-text bounce (bounce_message_file unset) with the returned message."""
    return (
        "Return-path: <>\n"
        "Received: from Debian-exim by mx.acme.example with local (Exim 4.96)\n"
        "\tid 1s6pQx-000Abc-2B\n"
        "\tfor jobs@acme.example; Tue, 14 May 2024 10:02:15 +0200\n"
        "X-Failed-Recipients: max.mustermann@candidates.example\n"
        "Auto-Submitted: auto-replied\n"
        "From: Mail Delivery System <Mailer-Daemon@mx.acme.example>\n"
        "To: jobs@acme.example\n"
        "Subject: Mail delivery failed: returning message to sender\n"
        "Message-Id: <E1s6pQx-000Abc-2B@mx.acme.example>\n"
        "Date: Tue, 14 May 2024 10:02:15 +0200\n"
        "\n"
        "This message was created automatically by mail delivery software.\n"
        "\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n"
        "\n"
        "  max.mustermann@candidates.example\n"
        f"{failure}"
        "\n"
        "------ This is a copy of the message, including all the headers. ------\n"
        "\n"
        "Return-path: <jobs@acme.example>\n"
        f"{ORIGINAL}"
        "\n"
        "Dear Max, thank you for your application.\n"
    )


# -- kind 1: nothing extracted (a broken MIME boundary) --------------------------------------------


def test_a_gmail_dsn_whose_body_boundary_differs_from_its_header_is_still_read() -> None:
    data = gmail_dsn(
        header_boundary="000000000000f3a1c50618a4b2d7",
        body_boundary="000000000000f3a1c50618a4b2d8",
        human=GMAIL_NOT_FOUND_TEXT,
        status="5.1.1",
        diagnostic=GMAIL_NOT_FOUND_DIAGNOSTIC,
    )
    bounce = parse_bounce_message(data)
    assert bounce.failed is not None
    assert bounce.failed.status == "5.1.1"
    assert bounce.failed.final_recipient == "max.mustermann@candidates.example"
    assert "The email account that you tried to reach does not exist" in bounce.text
    diagnosis = diagnose(data)
    assert diagnosis.cause is Cause.RECIPIENT_UNKNOWN
    assert diagnosis.evidence["reporting_mta"] == "googlemail.com"


def test_a_postfix_dsn_without_a_boundary_parameter_is_read_from_its_raw_text() -> None:
    data = postfix_dsn(
        status="5.2.2",
        diagnostic="552 5.2.2 <max.mustermann@candidates.example>: Mailbox full",
        said="552 5.2.2 <max.mustermann@candidates.example>: Mailbox full (in reply to RCPT TO command)",
        content_type="multipart/report; report-type=delivery-status",
    )
    bounce = parse_bounce_message(data)
    assert bounce.failed is not None
    assert bounce.failed.diagnostic_code == (
        "552 5.2.2 <max.mustermann@candidates.example>: Mailbox full"
    )
    assert bounce.reporting_mta == "mail.acme.example"
    assert diagnose(data).cause is Cause.MAILBOX_FULL


def test_a_dsn_declared_as_plain_text_gives_its_status_fields() -> None:
    # A relay that rewrote the Content-Type: the report's parts arrive as one text/plain body.
    data = postfix_dsn(
        status="5.1.1",
        diagnostic="550 5.1.1 <max.mustermann@candidates.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table",
        said="550 5.1.1 <max.mustermann@candidates.example>: Recipient address rejected:\n"
        "    User unknown in virtual mailbox table (in reply to RCPT TO command)",
        content_type="text/plain; charset=us-ascii",
    )
    bounce = parse_bounce_message(data)
    assert bounce.failed is not None
    assert bounce.failed.action == "failed"
    assert "DKIM-Signature" not in bounce.text
    assert diagnose(data).cause is Cause.RECIPIENT_UNKNOWN


# -- kind 2: the less specific signal wins ---------------------------------------------------------


def test_the_diagnostic_code_of_the_recipient_beats_the_dsn_status() -> None:
    data = postfix_dsn(
        status="5.1.1",
        diagnostic="550 5.7.1 Service unavailable; client [192.0.2.44] IP address blacklisted",
        said="550 5.7.1 Service unavailable; client [192.0.2.44] IP address blacklisted\n"
        "    (in reply to RCPT TO command)",
    )
    failure = extract_bounce_failure(parse_bounce_message(data))
    assert (failure.code, failure.enhanced) == ("550", "5.7.1")
    assert diagnose(data).cause is Cause.CLIENT_IP_REJECTED


def test_an_over_quota_reply_under_status_5_1_1_is_mailbox_full() -> None:
    data = postfix_dsn(
        status="5.1.1",
        diagnostic="552 5.2.2 Over quota",
        said="552 5.2.2 Over quota (in reply to end of DATA command)",
    )
    assert diagnose(data).cause is Cause.MAILBOX_FULL


def test_a_status_the_reply_does_not_carry_loses_to_the_replys_wording() -> None:
    # The reporting MTA derived Status 5.2.1 (mailbox disabled) from a reply without one.
    data = gmail_dsn(
        header_boundary="000000000000a1b2c3d4e5f60718",
        body_boundary="000000000000a1b2c3d4e5f60718",
        human="\n** Message not delivered **\n\nThe response was:\n\n"
        "450 The user you are trying to contact is receiving mail at a rate that prevents "
        "additional messages from being delivered.\n",
        status="5.2.1",
        diagnostic="450 The user you are trying to contact is receiving mail at a rate that "
        "prevents additional messages from being delivered.",
    )
    assert diagnose(data, SMALL).cause is Cause.RATE_LIMITED


def test_an_auth_sub_code_in_a_reply_to_data_loses_to_its_wording() -> None:
    # 5.7.9 means "authentication mechanism too weak"; a 554 refusing a message is no AUTH reply.
    reply = (
        "554 5.7.9 Message not accepted for policy reasons.  "
        "See https://postmaster.example.net/error-codes"
    )
    assert diagnose(reply, SMALL).cause is Cause.POLICY_REJECTED
    exim = exim_bounce(
        "    host mx.candidates.example [192.0.2.80]\n"
        "    SMTP error from remote mail server after end of data:\n"
        f"    {reply}\n"
    )
    assert diagnose(exim, SMALL).cause is Cause.POLICY_REJECTED
    # The same code as the answer to AUTH keeps its meaning.
    assert diagnose("534 5.7.9 Authentication mechanism is too weak", SMALL).cause is (
        Cause.AUTH_MECHANISM
    )


def test_a_bare_reply_code_does_not_contradict_the_enhanced_code_next_to_it() -> None:
    reply = (
        "552-5.7.0 This message was blocked because its content presents a potential\n"
        "552-5.7.0 security issue. Please visit\n"
        "552-5.7.0  https://support.google.com/mail/?p=BlockedMessage to review our\n"
        "552 5.7.0 message content and attachment content guidelines. - gsmtp"
    )
    no_wording_rule = _table(
        {"id": "mailbox.code-552", "code": "552", "cause": "mailbox_full", "confidence": 0.4},
        {"id": "mailbox.enhanced", "enhanced": ["*.2.2"], "cause": "mailbox_full", "confidence": 0.9},
    )  # fmt: skip
    assert diagnose(reply, no_wording_rule).cause is Cause.UNKNOWN
    assert diagnose(reply, SMALL).cause is Cause.POLICY_REJECTED
    # A reply code still decides beside a code of its own subject, or a protocol code.
    assert diagnose("552 5.2.0 Requested action aborted", no_wording_rule).cause is (
        Cause.MAILBOX_FULL
    )
    assert diagnose("530-5.5.1 Authentication Required.", SMALL).cause is Cause.AUTH_FAILED


# -- kind 3: text that is not the error --------------------------------------------------------------


GMAIL_SOCKET_ERROR = (
    "Delivered-To: jobs@acme.example\n"
    "Return-Path: <>\n"
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=googlemail.com; s=20230601;\n"
    "        h=to:from:subject:message-id:date:mime-version; bh=frcCV1k9oG9oKj3dpUqdJg1Pxo=;\n"
    "        b=c29ja2V0IGVycm9yIGJ1dCBzaWduZWQgd2l0aCBES0lN\n"
    "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n"
    "To: jobs@acme.example\n"
    "Subject: Delivery Status Notification (Failure)\n"
    "Date: Tue, 14 May 2024 01:02:16 -0700 (PDT)\n"
    "Message-ID: <6643a1b8.050a0220.1234.abcdSMTPIN_ADDED_MISSING@mx.google.com>\n"
    'Content-Type: text/plain; charset="UTF-8"\n'
    "\n"
    "Delivery to the following recipient failed permanently:\n"
    "\n"
    "     max.mustermann@candidates.example\n"
    "\n"
    "Technical details of permanent failure:\n"
    "The recipient server did not accept our requests to connect. Learn more at "
    "https://support.google.com/mail/answer/7720\n"
    "[mx.candidates.example. 192.0.2.80: socket error]\n"
    "\n"
    "----- Original message -----\n"
    "\n"
    f"{ORIGINAL}"
    "\n"
    "Dear Max, thank you for your application.\n"
)


def test_the_bounces_own_dkim_signature_is_not_the_error() -> None:
    bounce = parse_bounce_message(GMAIL_SOCKET_ERROR.encode())
    assert "DKIM" not in bounce.text
    assert "did not accept our requests to connect" in bounce.text
    assert diagnose(GMAIL_SOCKET_ERROR, SMALL).cause is Cause.CONNECTION_REFUSED
    assert diagnose(GMAIL_SOCKET_ERROR).cause is not Cause.POLICY_REJECTED


def test_a_pasted_bounce_with_headers_is_read_without_them() -> None:
    # Pasted from a mail client: some words first, then the bounce with all its headers.
    pasted = "Forwarded bounce below.\n\n" + GMAIL_SOCKET_ERROR
    failure = extract_failure(pasted)
    assert "DKIM" not in failure.text
    assert diagnose(pasted, SMALL).cause is Cause.CONNECTION_REFUSED


def test_the_subject_of_the_returned_message_is_not_the_error() -> None:
    # Exchange puts the original subject in the NDR's subject.
    data = (
        "From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@acme.example>\n"
        "To: jobs@acme.example\n"
        "Subject: Undeliverable: Re: your SPF and DKIM questions\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        "Delivery has failed to these recipients or groups:\n\n"
        "max.mustermann@candidates.example\n"
        "The recipient server did not accept our requests to connect.\n"
    )
    assert diagnose(data, SMALL).cause is Cause.CONNECTION_REFUSED


def _report_returning(kind: str, original: str) -> bytes:
    """An RFC 3464 report: a full mailbox, then the returned original as ``kind``."""
    return (
        "From: MAILER-DAEMON@mx.candidates.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\nContent-Type: text/plain\r\n\r\n"
        "The mail system could not deliver your message.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.candidates.example\r\n\r\n"
        "Final-Recipient: rfc822; max@candidates.example\r\nAction: failed\r\n"
        "Status: 5.2.2\r\nDiagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n\r\n"
        f"--b1\r\nContent-Description: Undelivered Message\r\nContent-Type: {kind}\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        f"{original}\r\n--b1--\r\n"
    ).encode()


# The returned original says other things: a recipient unknown in its words, and a MIME
# structure that is not closed, nested inside a part whose boundary never ends.
_TRICKY_ORIGINAL = (
    "From: jobs@acme.example\r\nSubject: 550 5.1.1 User unknown\r\n"
    'Content-Type: multipart/mixed; boundary="inner"\r\n\r\n'
    "--inner\r\nContent-Type: text/plain\r\n\r\nUser unknown, no such user here\r\n"
)


@pytest.mark.parametrize(
    "kind",
    [
        "message/rfc822",
        "text/rfc822-headers",
        "message/global",  # RFC 6533: an internationalised original
        "message/global-headers",
        "MESSAGE/RFC822; x-note=upper-case",
    ],
)
def test_the_returned_original_of_every_type_is_not_read(kind: str) -> None:
    bounce = parse_bounce_message(_report_returning(kind, _TRICKY_ORIGINAL))
    assert bounce.text == "The mail system could not deliver your message."
    assert [r.status for r in bounce.recipients] == ["5.2.2"]
    diagnosis = diagnose(_report_returning(kind, _TRICKY_ORIGINAL))
    assert (diagnosis.cause, diagnosis.evidence["enhanced_status"]) == (Cause.MAILBOX_FULL, "5.2.2")


def test_a_report_that_names_the_type_in_its_words_is_read_to_its_end() -> None:
    # Only a part header declaring the type starts the original, not words quoting it.
    data = _report_returning("message/rfc822", _TRICKY_ORIGINAL).replace(
        b"deliver your message.\r\n",
        b"deliver your message.\r\n--\r\nContent-Type: message/rfc822 follows below\r\n",
    )
    bounce = parse_bounce_message(data)
    assert bounce.text.endswith("Content-Type: message/rfc822 follows below") is False
    assert [r.status for r in bounce.recipients] == ["5.2.2"]


# -- kind 4: the same bounce by every path ----------------------------------------------------------

FROM_LINE = "From MAILER-DAEMON Tue May 14 10:02:16 2024\n"


def _every_path(data: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    alone = tmp_path / "alone" / "bounce.eml"
    alone.parent.mkdir()
    alone.write_bytes(data)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "bounce.eml").write_bytes(data)
    (folder / "other.txt").write_text("550 5.1.1 User unknown\n")
    box = tmp_path / "bounces.mbox"
    message = data if data.startswith(b"From ") else FROM_LINE.encode() + data
    box.write_bytes(
        message
        + b"\n"
        + FROM_LINE.encode()
        + b"From: x@y.example\nSubject: s\n\n421 4.3.2 Service shutting down\n"
    )

    def run(name: str) -> Any:
        out = io.StringIO()
        main(["diagnose", name, "--json"], out=out, err=io.StringIO())
        return json.loads(out.getvalue())

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    stdin = run("-")
    in_folder = run(str(folder))
    in_box = run(str(box))
    return {
        "alone": run(str(alone))["cause"],
        "folder": [d["cause"] for d in in_folder if d["input"].endswith("bounce.eml")],
        "folder_count": len(in_folder),
        "mbox": [d["cause"] for d in in_box],
        "stdin": stdin["cause"],
    }


def test_a_saved_bounce_starting_with_a_from_line_is_one_message_by_every_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (FROM_LINE + GMAIL_SOCKET_ERROR.replace("socket error", "Connection timed out")).encode()
    assert _every_path(data, tmp_path, monkeypatch) == {
        "alone": "connection_timeout",
        "folder": ["connection_timeout"],
        "folder_count": 2,
        "mbox": ["connection_timeout", "temporary_failure"],
        "stdin": "connection_timeout",
    }


def test_a_from_line_in_the_returned_message_does_not_split_the_bounce(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unescaped "From " line in the returned body (mboxo writers do not always quote it).
    data = (
        exim_bounce(
            "    host mx.candidates.example [192.0.2.80]\n"
            "    SMTP error from remote mail server after RCPT TO:<max.mustermann@candidates.example>:\n"
            "    550 5.1.1 <max.mustermann@candidates.example>: Recipient address rejected: User unknown\n"
        ).replace(
            "Dear Max, thank you for your application.\n",
            "Dear Max,\n\nFrom 1 June our DKIM and SPF records change; mail loop test.\n",
        )
    ).encode()
    assert _every_path(data, tmp_path, monkeypatch) == {
        "alone": "recipient_unknown",
        "folder": ["recipient_unknown"],
        "folder_count": 2,
        "mbox": ["recipient_unknown", "temporary_failure"],
        "stdin": "recipient_unknown",
    }


def test_read_inputs_gives_one_message_for_a_single_bounce_with_a_from_line(tmp_path: Path) -> None:
    path = tmp_path / "saved.eml"
    path.write_bytes((FROM_LINE + GMAIL_SOCKET_ERROR).encode())
    inputs = read_inputs(str(path))
    assert [label for label, _ in inputs] == [str(path)]
    assert read_inputs("-", path.read_bytes())[0][1] == inputs[0][1]


# -- Exim: the remote reply after "SMTP error from remote mail server after ..." ----------------------


@pytest.mark.parametrize(
    ("failure", "code", "enhanced", "cause"),
    [
        (
            "    host mx.candidates.example [192.0.2.80]\n"
            "    SMTP error from remote mail server after initial connection:\n"
            "    554 5.7.1 Service unavailable; Client host [192.0.2.44] blocked using zen.spamhaus.org\n",
            "554",
            "5.7.1",
            Cause.CLIENT_IP_REJECTED,
        ),
        (
            "    SMTP error from remote mail server after RCPT TO:<max.mustermann@candidates.example>: "
            "host mx.candidates.example [192.0.2.80]: 550 Unrouteable address\n",
            "550",
            None,
            Cause.DNS_FAILURE,
        ),
        (
            "    SMTP error from remote mail server after MAIL FROM:<jobs@acme.example> SIZE=48213230: "
            "552 5.3.4 Message size exceeds fixed maximum message size\n",
            "552",
            "5.3.4",
            Cause.MESSAGE_TOO_LARGE,
        ),
        (
            "    host mx.candidates.example [192.0.2.80]\n"
            "    SMTP error from remote mail server after end of data:\n"
            "    552 Requested action aborted: exceeded storage allocation\n",
            "552",
            None,
            Cause.MAILBOX_FULL,
        ),
    ],
)
def test_exim_gives_the_remote_reply_after_its_smtp_error_line(
    failure: str, code: str, enhanced: str | None, cause: Cause
) -> None:
    data = exim_bounce(failure)
    result = extract_bounce_failure(parse_bounce_message(data.encode()))
    assert (result.code, result.enhanced) == (code, enhanced)
    assert diagnose(data).cause is cause


@pytest.mark.parametrize(
    "own_words",
    ["    retry timeout exceeded\n", "    all relevant MX records point to non-existent hosts\n"],
)
def test_exims_own_words_reach_the_rules(own_words: str) -> None:
    table = _table(
        {"id": "exim.own", "text": "retry timeout exceeded|point to non-existent hosts", "cause": "dns_failure", "confidence": 0.8},
        {"id": "policy.wording", "text": "\\bDKIM\\b|mail loop", "cause": "policy_rejected", "confidence": 0.9},
    )  # fmt: skip
    data = exim_bounce(own_words)
    assert own_words.strip() in parse_bounce_message(data.encode()).text
    assert diagnose(data, table).cause is Cause.DNS_FAILURE


_GMAIL_DELAY = (
    "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n"
    "To: sender@example.org\n"
    "Subject: Delivery Status Notification (Delay)\n"
    "\n"
    "This is an automatically generated Delivery Status Notification\n"
    "\n"
    "THIS IS A WARNING MESSAGE ONLY.\n"
    "\n"
    "Delivery to the following recipient has been delayed:\n"
    "\n"
    "     someone@example.net\n"
    "\n"
    "Message will be retried for 2 more day(s)\n"
    "\n"
    "   ----- Message header follows -----\n"
    "\n"
    "Subject: Virus alert: SPF and DKIM failed, mailbox full\n"
    "X-Spam-Report: spam, policy rejected, user unknown\n"
    "\n"
    "   ----- Message body suppressed -----\n"
)


def test_the_returned_header_after_gmails_marker_is_not_read() -> None:
    bounce = parse_bounce_message(_GMAIL_DELAY.encode())
    assert "Virus" not in bounce.text and "user unknown" not in bounce.text
    assert diagnose(_GMAIL_DELAY).cause is Cause.TEMPORARY_FAILURE


@pytest.mark.parametrize("product", ["InterScan E-Mail VirusWall NT", "McAfee VirusScan"])
def test_a_scanner_product_name_is_not_a_virus_verdict(product: str) -> None:
    text = f"Message from {product}\nReason: Exceeded Maximum Delivery Attempts."
    assert diagnose(text).cause is Cause.TEMPORARY_FAILURE
    assert diagnose("554 5.7.1 Message rejected: virus found").cause is Cause.POLICY_REJECTED


def test_a_refused_connection_in_a_local_commands_output_is_a_temporary_failure() -> None:
    # Postfix pipe(8) quotes the output of the receiving host's own content filter.
    bounce = (
        "From: MAILER-DAEMON@example.net\nTo: sender@example.org\nSubject: Delayed Mail\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nYour message could not be delivered for 0.2 hours.\n\n"
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        "Final-Recipient: rfc822; list@example.net\nAction: delayed\nStatus: 4.0.0\n"
        "Diagnostic-Code: X-Postfix; temporary failure. Command output: filter: unable to\n"
        "    connect to scanner daemon: Connection refused\n\n--b--\n"
    )
    assert diagnose(bounce).cause is Cause.TEMPORARY_FAILURE
    assert diagnose("Connection refused").cause is Cause.CONNECTION_REFUSED


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        ("552 5.1.1 5.2.2 sorry, final recipient mailbox is full", Cause.MAILBOX_FULL),
        (
            "552 5.2.2 <a@example.net>: Recipient address rejected: Address does not exist",
            Cause.RECIPIENT_UNKNOWN,
        ),
        (
            "554 5.7.1 <a@example.net>: Recipient address rejected: Nonexistent user",
            Cause.RECIPIENT_UNKNOWN,
        ),
        ("454 4.7.0 TLS not available due to local problem", Cause.TLS_MISMATCH),
        (
            "421 4.7.1 Client host [192.0.2.1] blocked using grey.example; greylisted",
            Cause.TEMPORARY_FAILURE,
        ),
        ("550 Sender verify failed", Cause.POLICY_REJECTED),
    ],
)
def test_decisive_wording_overrules_a_code_that_says_otherwise(reply: str, cause: Cause) -> None:
    assert diagnose(reply).cause is cause


def test_where_the_code_agrees_with_decisive_wording_the_codes_rule_reports() -> None:
    diagnosis = diagnose("552 5.2.2 Mailbox full")
    assert diagnosis.cause is Cause.MAILBOX_FULL
    assert diagnosis.rule == "mailbox.full-enhanced"


def test_decisive_wording_takes_no_code() -> None:
    from diagnostics.diagnose.rules import RuleTableError

    data = {
        "causes": {
            c.value: {"who_acts": "it", "explanation": "x", "remediation": "y"} for c in Cause
        },
        "rules": [
            {
                "id": "r",
                "cause": "mailbox_full",
                "confidence": 0.5,
                "code": "552",
                "decisive": "full",
            }
        ],
    }
    with pytest.raises(RuleTableError, match="decisive"):
        parse_rules(data)
