"""The real mail world itself: delivery, redirect, bounce, submission, IMAP, DNS, tagging."""

from __future__ import annotations

import smtplib
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import dns.rcode
import dns.resolver
import pytest

from tests.realmail.servers import (
    DEFAULT_TARGET,
    IMAPS_PORT,
    JOBS,
    MX_ADDR,
    PLATFORM_ADDR,
    RealMail,
    RealMailError,
    SilentServer,
    start_realmail,
)

CANDIDATE = "candidate@example.org"


def _message(subject: str, sender: str = CANDIDATE) -> bytes:
    return (
        f"From: {sender}\r\nTo: {JOBS}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.org>\r\n\r\nHello.\r\n"
    ).encode()


def _send(world: RealMail, sender: str, subject: str) -> None:
    with world.smtp() as client:
        client.sendmail(sender, [JOBS], _message(subject, sender))
    world.wait_for_delivery()


def _resolver(world: RealMail) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.port = world.dns.port
    resolver.nameservers = [world.dns.host]
    resolver.lifetime = 3.0
    return resolver


def test_inbound_mail_is_kept_and_redirected_and_readable_over_imap(realmail: RealMail) -> None:
    _send(realmail, CANDIDATE, "Application 1")

    [kept] = realmail.mailbox()
    assert kept["Subject"] == "Application 1"
    assert kept["Delivered-To"] == JOBS
    assert kept["Return-Path"] == f"<{CANDIDATE}>"

    [redirected] = realmail.sink_messages
    assert redirected.mail_from == CANDIDATE
    assert redirected.rcpt_tos == (DEFAULT_TARGET,)
    assert redirected.email["Subject"] == "Application 1"
    assert redirected.email["Message-ID"] == "<Application-1@example.org>"
    assert realmail.sink.rejected == []

    imap = realmail.imap("implicit")
    try:
        assert imap.login(JOBS, realmail.jobs_password)[0] == "OK"
        assert imap.select("INBOX") == ("OK", [b"1"])
        status, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert status == "OK"
        assert data[0] == (
            b"1 (BODY[HEADER.FIELDS (SUBJECT)] {26}",
            b"Subject: Application 1\r\n\r\n",
        )
    finally:
        imap.logout()


def test_mx_refuses_relay_and_unknown_users_as_postfix_does(realmail: RealMail) -> None:
    with realmail.smtp() as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        client.mail(CANDIDATE)
        assert client.rcpt("someone@example.org") == (
            554,
            b"5.7.1 <someone@example.org>: Relay access denied",
        )
        assert client.rcpt("nobody@company.test") == (
            550,
            b"5.1.1 <nobody@company.test>: Recipient address rejected: "
            b"User unknown in virtual mailbox table",
        )


def test_dns_publishes_both_mx_and_nxdomain_otherwise(realmail: RealMail) -> None:
    resolver = _resolver(realmail)
    assert [r.to_text() for r in resolver.resolve("company.test", "MX")] == ["10 mx.company.test."]
    assert [r.to_text() for r in resolver.resolve("mx.company.test", "A")] == [MX_ADDR]
    assert [r.to_text() for r in resolver.resolve("m.personio.de", "MX")] == [
        "10 mx.m.personio.de."
    ]
    assert [r.to_text() for r in resolver.resolve("mx.m.personio.de", "A", tcp=True)] == [
        PLATFORM_ADDR
    ]
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("example.org", "MX")
    assert realmail.dns_address == f"127.0.0.1:{realmail.dns.port}"


def test_a_mistyped_target_bounces_to_the_sender(
    realmail_factory: Callable[..., RealMail],
) -> None:
    world = realmail_factory(target="acme-jbos@m.personio.de")
    _send(world, JOBS, "Typo")

    assert world.sink_messages == []
    # The original, then the bounce (itself also expanded to the target, and dropped there).
    assert world.sink.rejected == ["acme-jbos@m.personio.de"] * 2
    kept, bounce = world.mailbox()
    assert kept["Subject"] == "Typo"
    assert bounce["From"] == "Mail Delivery System <MAILER-DAEMON@company.test>"
    assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
    assert bounce["Return-Path"] == "<>"
    assert bounce.get_content_type() == "multipart/report"
    [status] = [p for p in bounce.walk() if p.get_content_type() == "message/delivery-status"]
    text = status.as_string()
    assert "Final-Recipient: rfc822; acme-jbos@m.personio.de" in text
    assert "Status: 5.1.1" in text
    assert "Action: failed" in text


def test_without_a_copy_only_the_platform_gets_the_mail(
    realmail_factory: Callable[..., RealMail],
) -> None:
    world = realmail_factory(keep_copy=False)
    _send(world, CANDIDATE, "No copy")

    assert world.mailbox() == []
    assert [m.rcpt_tos for m in world.sink_messages] == [(DEFAULT_TARGET,)]


def test_subject_tag_rewrites_the_subject(realmail_factory: Callable[..., RealMail]) -> None:
    world = realmail_factory(subject_tag=True)
    _send(world, CANDIDATE, "Application 2")

    [kept] = world.mailbox()
    assert kept["Subject"] == "[EXTERNAL] Application 2"
    # The gateway rewrites before the alias expands: the platform sees the tag too.
    assert [m.email["Subject"] for m in world.sink_messages] == ["[EXTERNAL] Application 2"]


def test_submission_needs_tls_and_the_password_and_sends_only_as_itself(
    realmail: RealMail,
) -> None:
    with realmail.smtp(587) as client:
        client.ehlo()
        assert not client.has_extn("auth")
        client.starttls(context=realmail.client_context())
        client.ehlo()
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        client.login(JOBS, realmail.jobs_password)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as spoofed:
            client.sendmail("ceo@company.test", [CANDIDATE], b"Subject: x\r\n\r\nx\r\n")
        assert spoofed.value.recipients[CANDIDATE] == (
            553,
            b"5.7.1 <ceo@company.test>: Sender address rejected: not owned by user "
            b"jobs@company.test",
        )
        client.sendmail(JOBS, [JOBS], _message("From submission", JOBS))
    realmail.wait_for_delivery()
    assert [m["Subject"] for m in realmail.mailbox()] == ["From submission"]
    assert [m.rcpt_tos for m in realmail.sink_messages] == [(DEFAULT_TARGET,)]

    # One wrong attempt (Dovecot delays a failure by two seconds, as in production).
    with realmail.smtp(587) as client:
        client.starttls(context=realmail.client_context())
        client.ehlo()
        client.user, client.password = JOBS, realmail.jobs_password + "-wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.auth("PLAIN", client.auth_plain)
        assert refused.value.smtp_code == 535
        assert refused.value.args[1] == b"5.7.8 Error: authentication failed: (reason unavailable)"


def test_imap_starttls_login_and_a_wrong_password(realmail: RealMail) -> None:
    imap = realmail.imap("starttls")
    try:
        assert imap.login(JOBS, realmail.jobs_password)[0] == "OK"
        assert imap.select("INBOX") == ("OK", [b"0"])
    finally:
        imap.logout()
    # Dovecot answers a wrong password after two seconds, as in production.
    imap = realmail.imap("starttls")
    try:
        with pytest.raises(imap.error, match=r"\[AUTHENTICATIONFAILED\] Authentication failed\."):
            imap.login(JOBS, "not-" + realmail.jobs_password)
    finally:
        imap.logout()


def test_a_start_failure_raises_with_the_log_and_leaves_nothing_behind(
    realmail_factory: Callable[..., RealMail],
) -> None:
    before = set(Path(tempfile.gettempdir()).glob("maildiag-realmail-*"))
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((MX_ADDR, IMAPS_PORT))
        squatter.listen()
        with pytest.raises(RealMailError, match=r"(?s)dovecot exited.*Address already in use"):
            start_realmail()
    assert set(Path(tempfile.gettempdir()).glob("maildiag-realmail-*")) == before
    with socket.socket() as probe:
        assert probe.connect_ex((MX_ADDR, 25)) != 0
    # ... and the next world starts on the same addresses.
    assert realmail_factory().mailbox() == []


def test_silent_servers_never_answer(silent_imap: SilentServer, mute_imap: SilentServer) -> None:
    with (
        socket.create_connection(silent_imap.address, timeout=0.3) as sock,
        pytest.raises(TimeoutError),
    ):
        sock.recv(100)
    with socket.create_connection(mute_imap.address, timeout=0.3) as sock:
        assert sock.recv(100).startswith(b"* OK ")
        sock.sendall(b"a1 CAPABILITY\r\n")
        with pytest.raises(TimeoutError):
            sock.recv(100)
