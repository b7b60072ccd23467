"""How redirect.* judge what a live round trip saw (pure: no server needed)."""

from __future__ import annotations

from diagnostics.checks.redirect_live import (
    classify_live_local_copy,
    classify_live_loop,
    classify_platform_target,
    mailbox_unreadable,
)
from diagnostics.findings import Cause, Status
from diagnostics.profiles import load_profiles
from diagnostics.roundtrip import Arrival, LiveWatch, RoundTrip

PROFILE = load_profiles()["personio"]
INBOUND = "acme-jobs@m.personio.de"


def trip(*folders: str, **watch: object) -> RoundTrip:
    result = RoundTrip("jobs@company.test", token="maildiag-rt-1", waited_s=6.0)
    result.local_copies = [Arrival(f, b"Subject: x\r\n\r\nx", 0.0) for f in folders]
    result.live = LiveWatch(mailbox="jobs@company.test on imap.company.test:993", **watch)  # type: ignore[arg-type]
    return result


def test_a_copy_filed_as_spam_is_a_warning() -> None:
    outcome = classify_live_local_copy(trip("Junk-E-Mail"))
    assert outcome is not None
    assert (outcome.status, outcome.cause) == (Status.WARN, Cause.POLICY_REJECTED)
    assert "Junk-E-Mail" in outcome.title


def test_two_copies_are_a_sign_of_a_loop() -> None:
    outcome = classify_live_loop(trip("INBOX", "INBOX"))
    assert outcome is not None and outcome.status == Status.WARN


def test_an_unreadable_mailbox_names_the_key_to_fix_per_cause() -> None:
    cases = {
        ("login", "the IMAP server refused: NO [AUTHENTICATIONFAILED]"): (
            Cause.AUTH_FAILED,
            "token_command",
        ),
        ("tls", "the certificate is not trusted: self-signed"): (
            Cause.TLS_CERTIFICATE,
            "--ca-file",
        ),
        ("starttls", "the server does not offer STARTTLS"): (Cause.TLS_MISMATCH, ".encryption"),
        ("greeting", "timed out after 2.000 seconds"): (Cause.CONNECTION_TIMEOUT, ".host"),
        ("connect", "connection refused"): (Cause.CONNECTION_REFUSED, ".host"),
    }
    for (step, error), (cause, fix) in cases.items():
        outcome = mailbox_unreadable(
            trip(mailbox_step=step, mailbox_error=error), "subcompanies[0].mailbox"
        )
        assert (outcome.status, outcome.cause) == (Status.ERROR, cause), step
        assert fix in outcome.remediation, step
        assert "subcompanies[0].mailbox" in outcome.remediation or fix == "--ca-file"


def test_the_platform_target_answers() -> None:
    refused = LiveWatch(
        platform_mx="mx.m.personio.de", platform_code=550, platform_reply="550 5.1.1 unknown"
    )
    deferred = LiveWatch(
        platform_mx="mx.m.personio.de", platform_code=450, platform_reply="450 4.2.0 greylisted"
    )
    unreachable = LiveWatch(platform_error="connect: timed out")
    accepted = LiveWatch(
        platform_mx="mx.m.personio.de", platform_code=250, platform_reply="250 2.1.5 Ok"
    )
    verdicts = [
        classify_platform_target(w, PROFILE, INBOUND)
        for w in (refused, deferred, unreachable, accepted)
    ]
    assert [(v.status, v.cause) for v in verdicts] == [
        (Status.FAIL, Cause.RECIPIENT_UNKNOWN),
        (Status.WARN, Cause.TEMPORARY_FAILURE),
        (Status.ERROR, Cause.CONNECTION_REFUSED),
        (Status.PASS, None),
    ]
