"""The redirect family over the sandbox: the round trip, the local copy, loops and duplicates."""

from __future__ import annotations

import email.policy
import ssl
import time
from collections.abc import Callable
from email import message_from_bytes

import dns.asyncresolver
import pytest

from diagnostics.checks.redirect import classify_loop, classify_roundtrip, parse_bounce
from diagnostics.config import load_config
from diagnostics.context import Context
from diagnostics.findings import Cause, Finding, Status
from diagnostics.parse.dkim import verify
from diagnostics.profiles import get_profile
from diagnostics.registry import run_checks, select
from diagnostics.roundtrip import Arrival, RoundTrip
from diagnostics.sandbox.scenariofile import load_scenario
from diagnostics.sandbox.world import Sandbox
from tests.conftest import ACME

PROFILE = get_profile("personio")
REDIRECT = ("redirect.roundtrip", "redirect.local_copy", "redirect.loop")


async def audit_redirect(world: Sandbox) -> dict[str, Finding]:
    config = load_config(world.scenario.config_path(), environ=world.environ)
    findings = await run_checks(world.context(config), select(["redirect"]))
    return {f.check: f for f in findings if f.subject == "Acme GmbH"}


def outcome(findings: dict[str, Finding]) -> dict[str, tuple[str, str | None]]:
    return {c: (f.status.value, f.cause.value if f.cause else None) for c, f in findings.items()}


async def test_healthy_round_trip_arrives_unassigned_signed_and_once(world: Sandbox) -> None:
    findings = await audit_redirect(world)
    assert outcome(findings) == {check: ("pass", None) for check in REDIRECT}
    trip = findings["redirect.roundtrip"]
    assert trip.title == "Test message reached Unassigned messages"
    assert trip.evidence["arrivals"] == ("unassigned",)
    assert trip.evidence["local_copies"] == 1
    # What the check promises: a latency measured from the MX's acceptance (never negative)
    # and within the wait it is given; how fast this machine relays is no part of it.
    config = load_config(world.scenario.config_path(), environ=world.environ)
    wait = world.context(config).timeouts.roundtrip
    latency = trip.evidence["latency_s"]
    assert latency is not None and 0.0 <= latency < wait
    assert findings["redirect.loop"].title == "No loop, no duplicate (2 hops)"
    # The message as it arrived still carries a DKIM signature that verifies.
    box = world.platform_mailbox("acme")
    # Both (sub)companies' round trips land here; take this one's by its token.
    token = trip.evidence["token"]
    [arrived] = [box.read(k) for k in box.keys() if token.encode() in box.read(k)]
    checks = await verify(arrived, world.resolver())
    assert [(c.domain, c.verified) for c in checks] == [("candidates.example", True)]
    parsed = message_from_bytes(arrived, policy=email.policy.default)
    assert parsed["X-Maildiag-Token"] == token


async def scenario_findings(make_world: Callable[..., Sandbox], name: str) -> dict[str, Finding]:
    async with make_world(load_scenario(name)) as world:
        return await audit_redirect(world)


async def test_no_local_copy_warns(make_world: Callable[..., Sandbox]) -> None:
    findings = await scenario_findings(make_world, "no-local-copy")
    assert outcome(findings) == {
        "redirect.roundtrip": ("pass", None),
        "redirect.local_copy": ("warn", None),
        "redirect.loop": ("pass", None),
    }
    assert "DeliverToMailboxAndForward $true" in findings["redirect.local_copy"].remediation


async def test_no_redirection_fails_after_the_wait(make_world: Callable[..., Sandbox]) -> None:
    started = time.perf_counter()
    findings = await scenario_findings(make_world, "no-redirect")
    assert time.perf_counter() - started >= 2.0  # it waited its configured 2 s
    trip = findings["redirect.roundtrip"]
    assert (trip.status, trip.cause) == (Status.FAIL, Cause.FORWARDING_BLOCKED)
    assert trip.title == "No redirection: the test message stayed in jobs@acme.example"
    assert "acme-jobs@m.personio.de" in trip.remediation


async def test_mistyped_platform_address_is_named_from_the_bounce(
    make_world: Callable[..., Sandbox],
) -> None:
    findings = await scenario_findings(make_world, "mistyped-platform-address")
    trip = findings["redirect.roundtrip"]
    assert (trip.status, trip.cause) == (Status.FAIL, Cause.RECIPIENT_UNKNOWN)
    assert "5.1.1" in trip.detail
    assert trip.remediation.startswith(
        "Set the redirection of jobs@acme.example to exactly acme-jobs@m.personio.de"
    )
    assert outcome(findings)["redirect.loop"] == ("pass", None)


async def test_loop_is_detected_and_stopped(make_world: Callable[..., Sandbox]) -> None:
    findings = await scenario_findings(make_world, "mail-loop")
    assert outcome(findings)["redirect.roundtrip"] == ("fail", "loop_detected")
    assert outcome(findings)["redirect.loop"] == ("fail", "loop_detected")


async def test_slow_delivery_warns_above_the_threshold(make_world: Callable[..., Sandbox]) -> None:
    findings = await scenario_findings(make_world, "slow-delivery")
    trip = findings["redirect.roundtrip"]
    assert trip.status == Status.WARN
    # The fault holds the message for its delay from the moment the MX queued it (just before
    # its reply reached the sender): the latency is about that, over the sandbox's warning.
    delay = load_scenario("slow-delivery").company_mx.faults.delay_s
    assert delay - 0.5 <= trip.evidence["latency_s"] < delay + 5
    assert trip.title.startswith(f"Redirection works but is slow ({int(delay)}.")


async def test_live_mode_skips_with_the_manual_steps() -> None:
    config = load_config(
        ACME, environ={"ACME_SMTP_PASSWORD": "x" * 8, "ACME_RETAIL_SMTP_PASSWORD": "y" * 8}
    )
    context = Context(
        config=config,
        resolver=dns.asyncresolver.Resolver(configure=False),
        trust=ssl.create_default_context(),
    )
    findings = await run_checks(context, select(["redirect.roundtrip"]))
    first = findings[0]
    assert (first.status, first.title) == (
        Status.SKIP,
        "Round trip not asked for",
    )
    assert "maildiag audit CONFIG --roundtrip" in first.detail
    assert "click 'Send test mail'" in first.remediation
    assert "'Unassigned messages'" in first.remediation
    assert [f.status for f in findings] == [Status.SKIP, Status.SKIP, Status.SKIP]


def arrival(
    folder: str = "unassigned", data: bytes = b"Received: a\r\nReceived: b\r\n\r\nbody\r\n"
) -> Arrival:
    return Arrival(folder, data, 0.0)


def test_duplicates_are_a_loop_finding() -> None:
    trip = RoundTrip("jobs@acme.example", token="t", arrivals=[arrival(), arrival()])
    result = classify_loop(trip, PROFILE)
    assert (result.status, result.cause) == (Status.FAIL, Cause.LOOP_DETECTED)
    assert result.title == "Duplicates: the test message arrived 2 times"


def test_microsoft_365_refusing_external_forwarding_is_named() -> None:
    bounce = (
        b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; AM0PR01MB1234.eurprd01.prod.exchangelabs.com\r\n\r\n"
        b"Final-Recipient: rfc822; acme-jobs@m.personio.de\r\nAction: failed\r\nStatus: 5.7.520\r\n"
        b"Diagnostic-Code: smtp; 550 5.7.520 Access denied, Your organization does not allow external forwarding.\r\n"
    )
    assert parse_bounce(bounce) == (
        "5.7.520",
        "smtp; 550 5.7.520 Access denied, Your organization does not allow external forwarding.",
    )
    trip = RoundTrip("jobs@acme.example", token="t", bounces=[arrival("bounce", bounce)])
    result = classify_roundtrip(trip, PROFILE, "acme-jobs@m.personio.de", 60)
    assert (result.status, result.cause) == (Status.FAIL, Cause.FORWARDING_BLOCKED)
    assert "Automatic forwarding rules to On" in result.remediation


def dsn(status: str, diagnostic: str) -> bytes:
    return (
        b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.acme.example\r\n\r\n"
        b"Final-Recipient: rfc822; jobs@acme.example\r\nAction: failed\r\n"
        + f"Status: {status}\r\nDiagnostic-Code: smtp; {diagnostic}\r\n".encode()
    )


@pytest.mark.parametrize(
    ("status", "diagnostic", "cause", "title"),
    [
        (
            "5.2.2",
            "552 5.2.2 <jobs@acme.example>: Mailbox full (quota exceeded)",
            Cause.MAILBOX_FULL,
            "A mailbox on the way is full",
        ),
        (
            "5.3.4",
            "552 5.3.4 Error: message file too big",
            Cause.MESSAGE_TOO_LARGE,
            "The redirection bounced",
        ),
    ],
)
def test_a_bounce_is_reported_with_the_cause_the_rules_read(
    status: str, diagnostic: str, cause: Cause, title: str
) -> None:
    trip = RoundTrip(
        "jobs@acme.example", token="t", bounces=[arrival("bounce", dsn(status, diagnostic))]
    )
    result = classify_roundtrip(trip, PROFILE, "acme-jobs@m.personio.de", 60)
    assert (result.status, result.cause, result.title) == (Status.FAIL, cause, title)


GMAIL_CONFIRMATION = (
    b"From: Gmail Team <forwarding-noreply@google.com>\r\n"
    b"To: jobs@acme.example\r\n"
    b"Subject: (#842117306) Gmail Forwarding Confirmation - Receive Mail from jobs@acme.example\r\n"
    b"\r\njobs@acme.example has requested to automatically forward mail to your email address\r\n"
)


def test_a_gmail_forwarding_confirmation_instead_of_the_test_mail_is_named() -> None:
    trip = RoundTrip(
        "jobs@acme.example",
        token="t",
        local_copies=[arrival("jobs@acme.example")],
        others=[arrival("unassigned", GMAIL_CONFIRMATION)],
    )
    result = classify_roundtrip(trip, PROFILE, "acme-jobs@m.personio.de", 60)
    assert (result.status, result.cause) == (Status.FAIL, Cause.FORWARDING_BLOCKED)
    assert result.title == "Gmail is waiting for the forwarding to be confirmed"
    assert "Unassigned messages" in result.remediation


def test_microsoft_365_second_redirection_hint_when_the_copy_came_through_exchange() -> None:
    copy = (
        b"Received: from AM0PR01MB1234.eurprd01.prod.exchangelabs.com (2603:10a6:208:1::1) by\r\n"
        b" AM0PR01MB5678.eurprd01.prod.exchangelabs.com with HTTPS; Thu, 26 Nov 2026 09:00:01 +0000\r\n"
        b"X-MS-Exchange-Organization-AuthAs: Anonymous\r\n"
        b"Subject: test\r\n\r\nbody\r\n"
    )
    trip = RoundTrip(
        "jobs@acme.example", token="t", local_copies=[arrival("jobs@acme.example", copy)]
    )
    result = classify_roundtrip(trip, PROFILE, "acme-jobs@m.personio.de", 60)
    assert (result.status, result.cause) == (Status.FAIL, Cause.FORWARDING_BLOCKED)
    assert "Microsoft 365 runs one redirection per message" in result.remediation


async def test_header_fixes_name_each_companys_own_address(
    make_world: Callable[..., Sandbox],
) -> None:
    """A subcompany's fix names its own recruiting address, never the parent's."""
    async with make_world(load_scenario("subject-tagged")) as world:
        config = load_config(world.scenario.config_path(), environ=world.environ)
        findings = await run_checks(world.context(config), select(["headers"]))
    fixes = {
        (f.check, f.subject): f.remediation
        for f in findings
        if f.check in ("headers.retention", "headers.forwarding_style")
        and f.status is not Status.SKIP
    }
    assert sorted(fixes) == [
        ("headers.forwarding_style", "Acme GmbH"),
        ("headers.forwarding_style", "Acme Retail GmbH"),
        ("headers.retention", "Acme GmbH"),
        ("headers.retention", "Acme Retail GmbH"),
    ]
    for (_, subject), text in fixes.items():
        own = "jobs@retail.acme.example" if subject == "Acme Retail GmbH" else "jobs@acme.example"
        other = "jobs@acme.example" if own != "jobs@acme.example" else "jobs@retail.acme.example"
        assert f"Exempt {own} from that rule" in text and other not in text
