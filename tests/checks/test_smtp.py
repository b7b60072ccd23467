"""The smtp check family: over the sandbox's real submission server, against hostile servers
that break the protocol, and the pure classifications."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import dns.asyncresolver
import pytest

from diagnostics.checks.smtp.sending import classify_auth, classify_provider
from diagnostics.checks.smtp.settings_probe import classify_settings_probe
from diagnostics.config import AccountConfig, SmtpSettings, load_config, parse_config
from diagnostics.context import Context, Timeouts
from diagnostics.errors import ProbeError
from diagnostics.findings import Cause, Finding, Status
from diagnostics.net.session import Alternative, SessionOutcome, probe_session
from diagnostics.profiles import get_profile
from diagnostics.providers import load_providers, recognise
from diagnostics.registry import run_checks, select
from diagnostics.sandbox.scenario import Scenario
from diagnostics.sandbox.world import Sandbox
from diagnostics.secrets import MASK, Secret
from diagnostics.smtpclient import Reply, Step, Transcript
from tests.conftest import ACME
from tests.sandbox.conftest import with_changes

SMTP_CHECKS = (
    "smtp.connect",
    "smtp.tls",
    "smtp.auth",
    "smtp.sender",
    "smtp.settings_probe",
    "smtp.provider",
)
PROFILE = get_profile("personio")
SETTINGS_PATH = "Settings > Recruiting > Recruiting > General > Recruiting email settings"


def by_check(findings: list[Finding], subject: str = "Acme GmbH") -> dict[str, Finding]:
    return {f.check: f for f in findings if f.subject == subject}


def statuses(
    findings: list[Finding], subject: str = "Acme GmbH"
) -> dict[str, tuple[str, str | None]]:
    return {
        check: (f.status.value, f.cause.value if f.cause else None)
        for check, f in by_check(findings, subject).items()
    }


async def audit_smtp(
    world: Sandbox, config_path: Path = ACME, *, send_test: bool = False
) -> list[Finding]:
    config = load_config(config_path, environ=world.environ)
    context = world.context(config, send_test=send_test)
    return await run_checks(context, select(["smtp"]))


# -- over the sandbox ---------------------------------------------------------------------------


async def test_healthy_session_passes_every_step_with_one_auth(world: Sandbox) -> None:
    findings = await audit_smtp(world)
    assert statuses(findings) == {check: ("pass", None) for check in SMTP_CHECKS}
    assert statuses(findings, "Acme Retail GmbH") == {
        check: ("pass", None) for check in SMTP_CHECKS
    }
    assert statuses(findings, "Acme Labs GmbH") == {check: ("skip", None) for check in SMTP_CHECKS}
    assert world.submission is not None
    # Four checks share one session per setting: each account saw exactly one AUTH.
    assert sorted(world.submission.authentications) == [
        ("jobs@acme.example", "PLAIN", True),
        ("jobs@retail.acme.example", "PLAIN", True),
    ]
    tls = by_check(findings)["smtp.tls"]
    assert tls.title == "TLSv1.3 with a valid certificate"
    steps = [s["step"] for s in tls.evidence["steps"]]
    assert steps == [
        "resolve",
        "connect",
        "banner",
        "ehlo",
        "starttls",
        "tls",
        "ehlo_tls",
        "auth",
        "mail",
        "rcpt",
        "rset",
    ]
    assert all(s["elapsed_ms"] >= 0 for s in tls.evidence["steps"])


async def test_transcript_masks_the_password_in_every_form(
    world: Sandbox, acme: AccountConfig
) -> None:
    findings = await audit_smtp(world)
    transcript = "\n".join(by_check(findings)["smtp.auth"].evidence["transcript"])
    assert f"C: AUTH PLAIN {MASK}" in transcript
    assert "S: 235 2.7.0 Authentication successful" in transcript
    assert acme.company.smtp is not None
    password = acme.company.smtp.password.reveal()
    assert password not in transcript


async def test_send_test_sends_to_the_custom_address_and_it_reaches_the_platform(
    world: Sandbox,
) -> None:
    findings = await audit_smtp(world, send_test=True)
    sender = by_check(findings)["smtp.sender"]
    assert (sender.status, sender.title) == (
        Status.PASS,
        "jobs@acme.example sent a test message as jobs@acme.example",
    )
    await world.drain(10)
    unassigned = world.platform_mailbox("acme")
    arrived = [unassigned.message(k) for k in unassigned.keys()]
    subjects = sorted(str(m["Subject"]) for m in arrived)
    assert len(subjects) == 2 and all(s.startswith("maildiag test maildiag-") for s in subjects)
    assert {str(m["From"]) for m in arrived} == {"jobs@acme.example", "jobs@retail.acme.example"}


async def test_login_with_a_control_character_is_refused_before_any_command(
    world: Sandbox, acme: AccountConfig
) -> None:
    assert acme.company.smtp is not None
    settings = acme.company.smtp
    context = world.context(acme)
    outcome = await probe_session(
        context, settings, "jobs@acme.example\r\nRCPT TO:<x@evil.example>", send_test=False
    )
    assert outcome.failed == "input"
    assert outcome.transcript.lines == []
    assert world.submission is not None and world.submission.authentications == []


async def test_no_plaintext_auth_when_starttls_is_missing(
    make_world: Callable[..., Sandbox], healthy: Scenario
) -> None:
    # The server offers AUTH in clear text and no STARTTLS: the client must stop, not log in.
    scenario = with_changes(healthy, submission={"starttls": "absent", "plaintext_auth": True})
    async with make_world(scenario) as world:
        findings = await audit_smtp(world)
        assert world.submission is not None
        # The subcompany's implicit-TLS port logs in, encrypted; port 587 must see no AUTH.
        assert [a for a in world.submission.authentications if a[0] == "jobs@acme.example"] == []
    result = statuses(findings)
    assert result["smtp.tls"] == ("fail", "tls_mismatch")
    assert result["smtp.auth"] == ("skip", None)
    assert by_check(findings)["smtp.tls"].title == "STARTTLS not offered on port 587"


async def test_failed_certificate_check_is_never_downgraded(
    make_world: Callable[..., Sandbox], healthy: Scenario
) -> None:
    async with make_world(with_changes(healthy, submission={"certificate": "wrong_host"})) as world:
        findings = await audit_smtp(world)
        assert world.submission is not None and world.submission.authentications == []
    tls = by_check(findings)["smtp.tls"]
    assert (tls.status, tls.cause, tls.title) == (
        Status.FAIL,
        Cause.TLS_CERTIFICATE,
        "Certificate is not for smtp.acme.example",
    )
    assert "wrong-host.invalid" in tls.detail
    assert statuses(findings)["smtp.settings_probe"] == ("pass", None)


async def test_certificate_expiring_soon_warns(
    make_world: Callable[..., Sandbox], healthy: Scenario
) -> None:
    async with make_world(
        with_changes(healthy, submission={"certificate": "expiring_soon"})
    ) as world:
        findings = await audit_smtp(world)
    tls = by_check(findings)["smtp.tls"]
    assert tls.status == Status.WARN
    assert tls.title in ("Certificate expires in 6 days", "Certificate expires in 7 days")


async def test_server_that_hangs_up_after_the_greeting(
    make_world: Callable[..., Sandbox], healthy: Scenario
) -> None:
    async with make_world(
        with_changes(healthy, submission={"behaviour": "close_after_banner"})
    ) as world:
        findings = await audit_smtp(world)
    # The TCP connection was accepted and the server spoke: not a refusal, but a server that
    # ends its sessions without the 421 RFC 5321 section 3.8 asks for.
    connect = by_check(findings)["smtp.connect"]
    assert (connect.check, connect.status, connect.cause) == (
        "smtp.connect",
        Status.FAIL,
        Cause.TEMPORARY_FAILURE,
    )
    assert connect.title == "smtp.acme.example port 587 hangs up after its greeting"
    assert "ehlo: the server closed the connection" in connect.detail
    assert by_check(findings)["smtp.tls"].status == Status.SKIP
    # Every other port greets and hangs up too: what they did, not a refusal.
    probe = by_check(findings)["smtp.settings_probe"]
    assert (probe.check, probe.status, probe.cause) == (
        "smtp.settings_probe",
        Status.FAIL,
        Cause.TEMPORARY_FAILURE,
    )
    assert probe.title == "No combination works on smtp.acme.example"
    assert probe.detail.count("ehlo: the server closed the connection") == 2
    assert "No change of Port or Encryption" in probe.remediation


async def test_silent_server_times_out_at_the_banner_within_its_timeout(
    make_world: Callable[..., Sandbox], healthy: Scenario
) -> None:
    scenario = with_changes(healthy, submission={"behaviour": "silent"}).model_copy(
        update={"timeouts": {"banner": 0.5}}
    )
    async with make_world(scenario) as world:
        started = time.perf_counter()
        findings = await audit_smtp(world)
        elapsed = time.perf_counter() - started
    connect = by_check(findings)["smtp.connect"]
    assert (connect.status, connect.cause) == (Status.FAIL, Cause.CONNECTION_TIMEOUT)
    assert connect.title == "smtp.acme.example port 587 sends no greeting"
    retail = by_check(findings, "Acme Retail GmbH")["smtp.connect"]
    assert (retail.status, retail.cause) == (Status.FAIL, Cause.CONNECTION_TIMEOUT)
    # Not a bound on speed: a proof that no step waited beyond its own timeout (0.5 s each,
    # the alternatives in parallel), so nothing hung.
    assert elapsed < 10


async def test_starttls_on_the_implicit_tls_port(
    make_world: Callable[..., Sandbox], healthy: Scenario, tmp_path: Path
) -> None:
    text = ACME.read_text().replace("port: 587", "port: 465")
    config = tmp_path / "acme-465-starttls.yaml"
    config.write_text(text)
    # The live greeting timeout: the finding must not wait it out.
    scenario = healthy.model_copy(update={"timeouts": {"banner": 30, "connect": 10}})
    async with make_world(scenario) as world:
        started = time.perf_counter()
        findings = await audit_smtp(world, config)
        elapsed = time.perf_counter() - started
    connect = by_check(findings)["smtp.connect"]
    assert (connect.status, connect.cause) == (Status.FAIL, Cause.TLS_MISMATCH)
    assert connect.title == "Port 465 speaks TLS at once: choose SSL (implicit TLS)"
    assert "completed a TLS handshake at once (TLSv1.3)" in connect.detail
    assert connect.remediation.startswith(
        f"In {SETTINGS_PATH} > Use custom email address? Yes > use for sending emails? Yes, "
        "set Port 465 and Encryption SSL (implicit TLS)"
    )
    assert connect.evidence["port_speaks"] == "tls"
    steps = {s["step"]: s for s in connect.evidence["steps"]}
    assert steps["banner"]["ok"] is False
    probe = by_check(findings)["smtp.settings_probe"]
    assert (probe.status, probe.cause) == (Status.FAIL, Cause.TLS_MISMATCH)
    assert probe.title == "Use port 465 with Encryption SSL"
    assert elapsed < 10  # the greeting timeout is 30 s


async def test_implicit_tls_on_the_starttls_port_names_starttls(
    make_world: Callable[..., Sandbox], healthy: Scenario, tmp_path: Path
) -> None:
    text = ACME.read_text().replace("encryption: starttls", "encryption: tls", 1)
    config = tmp_path / "acme-587-tls.yaml"
    config.write_text(text)
    scenario = healthy.model_copy(update={"timeouts": {"banner": 30, "connect": 10}})
    async with make_world(scenario) as world:
        started = time.perf_counter()
        findings = await audit_smtp(world, config)
        elapsed = time.perf_counter() - started
    tls = by_check(findings)["smtp.tls"]
    assert (tls.status, tls.cause) == (Status.FAIL, Cause.TLS_MISMATCH)
    assert tls.title == "Encryption SSL on port 587: the server does not speak TLS there"
    assert "a second connection got a plain-text greeting at once (220 " in tls.detail
    assert "offers STARTTLS after EHLO" in tls.detail
    assert tls.remediation == (
        "Encryption is set to SSL on port 587; this server speaks STARTTLS there: choose "
        "TLS/STARTTLS, or port 465 with SSL."
    )
    assert tls.evidence["port_speaks"] == "plain"
    probe = by_check(findings)["smtp.settings_probe"]
    assert (probe.status, probe.cause) == (Status.FAIL, Cause.TLS_MISMATCH)
    assert probe.title == "Use port 587 with Encryption TLS/STARTTLS"
    assert elapsed < 10


# -- hostile servers ------------------------------------------------------------------------------


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def hostile(behaviour: Behaviour) -> AsyncIterator[int]:
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await behaviour(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.sleep(0.05)
        await server.wait_closed()


async def megabyte_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 " + b"x" * 1_000_000 + b"\r\n")
    await writer.drain()
    await reader.read()


async def endless_multiline(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        writer.write(b"220-still greeting you\r\n")
        await writer.drain()
        await asyncio.sleep(0)


async def not_a_code(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HELLO THERE\r\n")
    await writer.drain()
    await reader.read()


async def one_byte_a_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for byte in b"220 slow.example ESMTP\r\n":
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(1)


def hostile_context(
    port: int,
    timeouts: Timeouts,
    *,
    trust: ssl.SSLContext | None = None,
    password: str = "hostile-secret",  # noqa: S107 - the test server's password
) -> Context:
    """A live context whose one SMTP setting is a server of the test's on 127.0.0.1:``port``
    (STARTTLS, account jobs@acme.example, ``password``); trust is the system's by default."""
    text = f"""
platform: {{profile: personio, account: acme}}
company:
  name: Acme GmbH
  custom_address: jobs@acme.example
  smtp: {{host: 127.0.0.1, port: {port}, encryption: starttls, account: jobs@acme.example, password: "${{PW}}"}}
"""
    config = parse_config(text, source="hostile.yaml", environ={"PW": password})
    return Context(
        config=config,
        resolver=dns.asyncresolver.Resolver(configure=False),
        trust=trust or ssl.create_default_context(),
        timeouts=timeouts,
    )


@pytest.mark.parametrize(
    ("behaviour", "cause", "words"),
    [
        (megabyte_line, Cause.UNKNOWN, "reply line longer than 4096 bytes"),
        (endless_multiline, Cause.UNKNOWN, "runs past 100 lines"),
        (not_a_code, Cause.UNKNOWN, "not SMTP: 'HELLO THERE'"),
        (one_byte_a_second, Cause.CONNECTION_TIMEOUT, "banner: timed out after 1.000 seconds"),
    ],
)
async def test_hostile_server_ends_in_a_clear_finding_within_its_timeout(
    behaviour: Behaviour, cause: Cause, words: str
) -> None:
    async with hostile(behaviour) as port:
        context = hostile_context(
            port, Timeouts(dns=1, connect=1, banner=1, command=1, data=1, check=5)
        )
        started = time.perf_counter()
        findings = await run_checks(context, select(["smtp"]))
        elapsed = time.perf_counter() - started
    connect = by_check(findings)["smtp.connect"]
    assert (connect.status, connect.cause) == (Status.FAIL, cause)
    assert words in connect.detail
    assert {f.check for f in findings} == set(SMTP_CHECKS)
    assert all(f.status in (Status.FAIL, Status.SKIP, Status.PASS) for f in findings)
    # Never hangs: every step is bounded by its 1 s timeout (alternatives run in parallel).
    assert elapsed < 5


# -- pure classification -------------------------------------------------------------------------


def outcome_with(step: str, reply: Reply, *, host: str = "smtp.office365.com") -> SessionOutcome:
    settings = SmtpSettings(
        host=host,
        port=587,
        encryption="starttls",
        account="jobs@acme.example",
        password=Secret("x" * 8, source="test"),
    )
    outcome = SessionOutcome(settings, "jobs@acme.example", False, transcript=Transcript())
    outcome.auth_mechanism = "PLAIN"
    outcome.steps.append(Step(step, False, 1.0, reply=str(reply)))
    outcome.replies[step] = reply
    outcome.failed = step
    return outcome


def failed_at_ehlo(error: ProbeError) -> SessionOutcome:
    """acme's 587/STARTTLS session, ended at EHLO by ``error``."""
    settings = SmtpSettings(
        host="smtp.acme.example",
        port=587,
        encryption="starttls",
        account="jobs@acme.example",
        password=Secret("x" * 8, source="test"),
    )
    outcome = SessionOutcome(settings, "jobs@acme.example", False, transcript=Transcript())
    outcome.failed, outcome.error = "ehlo", error
    return outcome


CLOSED_AT_EHLO = "ehlo: the server closed the connection"
REFUSED = "connect: 198.51.100.20 port 25: Connection refused"
TIMED_OUT = "connect: timed out after 5.000 seconds"


@pytest.mark.parametrize(
    ("summaries", "cause"),
    [
        # Every other combination did what the configured one did: greeted, then hung up.
        ((CLOSED_AT_EHLO, CLOSED_AT_EHLO), Cause.TEMPORARY_FAILURE),
        ((REFUSED, REFUSED), Cause.CONNECTION_REFUSED),
        ((TIMED_OUT, TIMED_OUT), Cause.CONNECTION_TIMEOUT),
        ((REFUSED, CLOSED_AT_EHLO, CLOSED_AT_EHLO), Cause.TEMPORARY_FAILURE),
        ((TIMED_OUT, REFUSED, REFUSED), Cause.CONNECTION_REFUSED),
        # A tie goes to what the configured combination did (here: closed at EHLO).
        ((REFUSED, CLOSED_AT_EHLO), Cause.TEMPORARY_FAILURE),
        (("banner: the server closed the connection", REFUSED), Cause.CONNECTION_REFUSED),
        (("STARTTLS not offered", "STARTTLS not offered"), Cause.TLS_MISMATCH),
    ],
)
def test_when_no_combination_works_the_cause_says_what_the_others_did(
    summaries: tuple[str, ...], cause: Cause
) -> None:
    outcome = failed_at_ehlo(ProbeError("ehlo", "the server closed the connection"))
    ports = (465, 25, 2525)
    alternatives = [
        Alternative(port, "tls" if port == 465 else "starttls", False, summary)
        for port, summary in zip(ports, summaries, strict=False)
    ]
    result = classify_settings_probe(outcome, alternatives, PROFILE)
    assert (result.status, result.cause) == (Status.FAIL, cause)
    assert result.title == "No combination works on smtp.acme.example"
    assert "Recruiting email settings" in (result.remediation or "")


def test_a_server_that_greets_and_hangs_up_everywhere_is_not_a_port_problem() -> None:
    outcome = failed_at_ehlo(ProbeError("ehlo", "the server closed the connection"))
    alternatives = [
        Alternative(465, "tls", False, CLOSED_AT_EHLO),
        Alternative(25, "starttls", False, CLOSED_AT_EHLO),
    ]
    result = classify_settings_probe(outcome, alternatives, PROFILE)
    assert result.remediation == (
        f"No change of Port or Encryption in {SETTINGS_PATH} > Use custom email address? Yes > "
        "use for sending emails? Yes helps: smtp.acme.example greets and then ends the session "
        "without a reply (see Tried). Check its logs for why it drops the platform's sessions "
        "(connection limits, a content or reputation filter)."
    )


def test_microsoft_365_smtp_auth_disabled_names_the_admin_center_fix() -> None:
    reply = Reply(
        535,
        (
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
        ),
    )
    microsoft = recognise(smtp_host="smtp.office365.com").provider
    result = classify_auth(outcome_with("auth", reply), PROFILE, microsoft)
    assert (result.status, result.cause) == (Status.FAIL, Cause.AUTH_DISABLED)
    assert "Authenticated SMTP" in result.remediation
    assert (
        "Set-CASMailbox -Identity jobs@acme.example -SmtpClientAuthenticationDisabled $false"
        in result.remediation
    )


def test_gmail_application_specific_password_required() -> None:
    reply = Reply(
        534,
        (
            "5.7.9 Application-specific password required. For more information, go to",
            "5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor",
        ),
    )
    google = recognise(smtp_host="smtp.gmail.com").provider
    result = classify_auth(outcome_with("auth", reply, host="smtp.gmail.com"), PROFILE, google)
    assert (result.status, result.cause) == (Status.FAIL, Cause.AUTH_FAILED)
    assert "app password" in result.remediation


def test_generic_535_is_auth_failed_and_says_one_attempt() -> None:
    reply = Reply(535, ("5.7.8 Error: authentication failed: authentication failure",))
    result = classify_auth(outcome_with("auth", reply, host="smtp.acme.example"), PROFILE, None)
    assert (result.status, result.cause) == (Status.FAIL, Cause.AUTH_FAILED)
    assert "One attempt was made" in result.remediation


@pytest.mark.parametrize(
    ("host", "mx", "status", "title"),
    [
        ("smtp.office365.com", [], Status.PASS, "Microsoft 365 / Exchange Online"),
        (
            "acme-example.mail.protection.outlook.com",
            [],
            Status.FAIL,
            "acme-example.mail.protection.outlook.com does not take the platform's login",
        ),
        (
            "smtp-relay.gmail.com",
            [],
            Status.FAIL,
            "smtp-relay.gmail.com does not take the platform's login",
        ),
        (
            "aspmx.l.google.com",
            [],
            Status.FAIL,
            "aspmx.l.google.com does not take the platform's login",
        ),
        ("smtp.gmail.com", [], Status.PASS, "Google Workspace / Gmail"),
        (
            "smtp.acme.example",
            ["acme-example.mail.protection.outlook.com"],
            Status.PASS,
            "Mail hosted at Microsoft 365 / Exchange Online; SMTP through smtp.acme.example",
        ),
        ("smtp.acme.example", ["mx.acme.example"], Status.PASS, "Generic SMTP server"),
    ],
)
def test_provider_recognition(host: str, mx: list[str], status: Status, title: str) -> None:
    settings = SmtpSettings(
        host=host,
        port=587,
        encryption="starttls",
        account="jobs@acme.example",
        password=Secret("x" * 8, source="test"),
    )
    result = classify_provider(None, settings, mx)
    assert (result.status, result.title) == (status, title)
    if status == Status.FAIL:
        assert result.cause == Cause.AUTH_DISABLED
        assert (
            "Host smtp.office365.com" in result.remediation
            or "Host smtp.gmail.com" in result.remediation
        )


def test_every_provider_rule_has_a_known_cause_and_fills_its_placeholders() -> None:
    for provider in load_providers():
        assert provider.rules
        for rule in provider.rules:
            text = rule.remediation.format(account="a@b.example", sender="c@b.example")
            assert "{" not in text and text.endswith(".")


# -- EHLO ---------------------------------------------------------------------------------------


async def test_ehlo_names_the_client_by_its_address_literal() -> None:
    """RFC 5321 4.1.4: without a meaningful domain name a client sends an address literal; a
    made-up name is refused where servers look it up ("Helo command rejected: Host not
    found")."""
    said: list[bytes] = []

    async def record_ehlo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.example ESMTP\r\n")
        await writer.drain()
        said.append(await reader.readline())
        writer.write(b"250 mx.example\r\n")  # no STARTTLS: the session ends there
        await writer.drain()
        await reader.read()

    async with hostile(record_ehlo) as port:
        context = hostile_context(
            port, Timeouts(dns=1, connect=1, banner=1, command=1, data=1, check=5)
        )
        await run_checks(context, select(["smtp.connect"]))
    assert said[0] == b"EHLO [127.0.0.1]\r\n"


@pytest.mark.parametrize(
    ("sockname", "literal"),
    [
        (("192.0.2.5", 40000), "[192.0.2.5]"),
        (("2001:db8::5", 40000, 0, 0), "[IPv6:2001:db8::5]"),
        (("fe80::1%eth0", 40000, 0, 2), "[IPv6:fe80::1]"),
        (("::ffff:192.0.2.7", 40000, 0, 0), "[192.0.2.7]"),
    ],
)
def test_the_address_literal_of_each_family(sockname: tuple[object, ...], literal: str) -> None:
    from diagnostics.smtpclient import SMTPConnection

    class Writer:
        def get_extra_info(self, name: str) -> object:
            return sockname if name == "sockname" else None

    connection = SMTPConnection.__new__(SMTPConnection)
    connection.writer = Writer()  # type: ignore[assignment]
    assert connection.helo_name == literal


# -- the providers' own replies, from a loopback server ------------------------------------------

M365_BANNER = "220 AM0PR01CA0001.outlook.office365.com Microsoft ESMTP MAIL Service ready"
GMAIL_BANNER = "220 smtp.gmail.com ESMTP a1sm1234567wrt.1 - gsmtp"


@asynccontextmanager
async def provider_server(
    banner: str, replies: dict[str, list[str]]
) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    """A loopback SMTP server greeting with ``banner`` (STARTTLS, then AUTH PLAIN LOGIN) that
    answers the commands in ``replies`` (AUTH, MAIL) with the provider's exact lines."""
    from diagnostics.sandbox.certs import SandboxCA

    ca = SandboxCA()
    server_tls = ca.issue(["127.0.0.1"]).server_context()
    trust = ssl.create_default_context(cadata=ca.ca_pem.decode())

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(*lines: str) -> None:
            writer.write(b"".join(line.encode() + b"\r\n" for line in lines))
            await writer.drain()

        await say(banner)
        while line := await reader.readline():
            verb = line.decode().split(" ", 1)[0].strip().upper()
            if verb == "EHLO":
                tls = writer.get_extra_info("ssl_object") is not None
                await say("250-hello", "250 AUTH PLAIN LOGIN" if tls else "250 STARTTLS")
            elif verb == "STARTTLS":
                await say("220 2.0.0 SMTP server ready")
                await writer.start_tls(server_tls)
            elif verb in replies:
                await say(*replies[verb])
            elif verb == "AUTH":
                await say("235 2.7.0 Authentication successful")
            elif verb == "QUIT":
                await say("221 2.0.0 Service closing transmission channel")
                break
            else:
                await say("250 2.1.0 Sender OK")

    async with hostile(behaviour) as port:
        yield port, trust


@pytest.mark.parametrize(
    ("banner", "replies", "check_id", "cause", "start"),
    [
        (
            M365_BANNER,
            {
                "MAIL": [
                    "550 5.7.60 SMTP; Client does not have permissions to send as this sender "
                    "[AM0PR01MB1234.eurprd01.prod.exchangelabs.com 2026-11-26T09:30:00.000Z]"
                ]
            },
            "smtp.sender",
            Cause.SENDER_NOT_OWNED,
            "jobs@acme.example is not the primary SMTP address or the sign-in name of the mailbox",
        ),
        (
            M365_BANNER,
            {
                "AUTH": [
                    "535 5.7.139 Authentication unsuccessful, user is locked by your "
                    "organization's security defaults policy. Contact your administrator. "
                    "[AM0PR01CA0001.eurprd01.prod.exchangelabs.com 2026-11-26T09:30:00.000Z]"
                ]
            },
            "smtp.auth",
            Cause.AUTH_DISABLED,
            "Security defaults block SMTP AUTH (basic authentication) for jobs@acme.example",
        ),
        (
            GMAIL_BANNER,
            {
                "MAIL": [
                    "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail",
                    "550-5.4.5 sending limits go to",
                    "550 5.4.5  https://support.google.com/a/answer/166852 a1sm1234567wrt.2 - gsmtp",
                ]
            },
            "smtp.sender",
            Cause.RATE_LIMITED,
            "Google's sending limit for jobs@acme.example is used up",
        ),
        (
            GMAIL_BANNER,
            {
                "AUTH": [
                    "534-5.7.14 <https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbs>",
                    "534-5.7.14 Please log in with your web browser and then try again. Learn more at",
                    "534 5.7.14  https://support.google.com/mail/?p=WebLoginRequired a1sm1234567wrt.3 - gsmtp",
                ]
            },
            "smtp.auth",
            Cause.AUTH_FAILED,
            "Google blocked the sign-in of jobs@acme.example as suspicious",
        ),
    ],
    ids=["m365-send-as-itself", "m365-security-defaults", "gmail-daily-limit", "gmail-web-login"],
)
async def test_the_providers_own_replies_get_their_own_fix(
    banner: str, replies: dict[str, list[str]], check_id: str, cause: Cause, start: str
) -> None:
    async with provider_server(banner, replies) as (port, trust):
        context = hostile_context(
            port, Timeouts(dns=1, connect=2, banner=2, command=2, data=2, check=10), trust=trust
        )
        findings = await run_checks(context, select(["smtp"]))
    finding = by_check(findings)[check_id]
    assert (finding.status, finding.cause) == (Status.FAIL, cause)
    assert (finding.remediation or "").startswith(start), finding.remediation
