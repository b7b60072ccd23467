"""The "Test connection" done right: ``smtp.connect``, ``smtp.tls``, ``smtp.auth``,
``smtp.sender``, ``smtp.settings_probe`` and ``smtp.provider``.

I/O tier: :func:`probe_session` runs one SMTP session per distinct SMTP setting (host, port,
encryption, account, sender; memoised in the context, so the session checks share it and the
account sees exactly one AUTH) through :class:`~diagnostics.smtpclient.SMTPConnection`, which
records each step with its timing and reply. Each step has its timeout and the session a
budget (``Timeouts.session_budget``): a slow but working server passes, a dead port costs one
connect timeout. When no greeting comes within ``Timeouts.tls_probe_after`` seconds, a second
connection asks whether the port speaks TLS at once; when an implicit-TLS handshake fails,
whether it greets in plain text: the finding then names the encryption that port speaks.
Pure tier: the ``classify_*`` functions turn a :class:`SessionOutcome` into findings with a
cause and a remediation naming the setting and the value to try. A failure the check expects
never raises.

Longer than 600 lines for now: it holds the session I/O (one session per setting, the second
look) beside the six classifiers, their registrations and the settings probe; the session I/O
is to move next to the client.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from diagnostics.context import Context
from diagnostics.errors import ProbeError, SandboxError, StepTimeout
from diagnostics.fields import envelope_address
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net import AUTH_PREFERENCE, Dialer, DNSQueries
from diagnostics.parse.tlscert import Certificate, parse_certificate
from diagnostics.providers import Provider, recognise
from diagnostics.registry import check
from diagnostics.smtpclient import (
    Reply,
    SMTPConnection,
    SMTPProtocolError,
    Step,
    TLSInfo,
    Transcript,
    check_address,
    envelope_path,
    second_look,
    unverified_context,
)
from diagnostics.unplayed import refused, unplayed_outcome

if TYPE_CHECKING:
    # Types only: `maildiag smtp` runs these checks without loading pydantic's models.
    from diagnostics.config import SmtpSettings
    from diagnostics.profiles import PlatformProfile

T = TypeVar("T")

EXPIRY_WARN_DAYS = 21
ALTERNATIVES: tuple[tuple[int, str], ...] = ((465, "tls"), (587, "starttls"), (25, "starttls"))


# -- what one session established ------------------------------------------------------------


@dataclass
class SessionOutcome:
    """Everything one probe session established, step by step."""

    settings: SmtpSettings
    sender: str
    send_test: bool
    source: str | None = None
    address: str | None = None
    failed: str | None = None
    error: ProbeError | None = None
    greeting: Reply | None = None
    ehlo: Reply | None = None
    tls: TLSInfo | None = None
    tls_verify_error: str | None = None
    certificate: Certificate | None = None
    auth_mechanism: str | None = None
    replies: dict[str, Reply] = field(default_factory=dict)
    test_message_id: str | None = None
    # What a second connection found the port to speak when the configured encryption got
    # nowhere: "tls" (a handshake at once, no greeting) or "plain" (a greeting in clear text).
    port_speaks: str | None = None
    port_tls: TLSInfo | None = None
    plain_greeting: Reply | None = None
    plain_ehlo: Reply | None = None
    # Whether the session ran from a platform egress address (the sandbox), or from here.
    as_platform: bool = False
    source_label: str = "this machine"
    transcript: Transcript = field(default_factory=Transcript)

    @property
    def steps(self) -> list[Step]:
        """The session's steps, as the client recorded them in the transcript."""
        return self.transcript.steps

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def reached(self, name: str) -> bool:
        return self.step(name) is not None

    @property
    def advertised_auth(self) -> tuple[str, ...]:
        if self.ehlo is None:
            return ()
        return tuple(m.upper() for m in self.ehlo.keywords.get("AUTH", "").split())

    def evidence(self) -> dict[str, Any]:
        return {
            "host": self.settings.host,
            "port": self.settings.port,
            "encryption": self.settings.encryption,
            "address": self.address,
            "source": self.source,
            "port_speaks": self.port_speaks,
            "steps": [s.as_dict() for s in self.steps],
            "transcript": self.transcript.as_text(),
        }


# -- I/O tier ---------------------------------------------------------------------------------


async def resolve_host(context: Context, host: str) -> list[str]:
    """The host's addresses for connecting, as the dialer finds them (``--resolve``, the
    hosts file, then DNS); DialError (step ``resolve``) naming what went wrong."""
    return await Dialer.of(context).addresses(host)


def source_for(context: Context) -> str | None:
    """Where probes connect from: the platform's first egress IP in the sandbox."""
    return next(iter(context.egress_sources.values()), None) if context.egress_sources else None


async def _timed(
    outcome: SessionOutcome, name: str, action: Callable[[], Awaitable[Reply | None]]
) -> Reply | None:
    """Run step ``name``, which the client records, and note in ``outcome`` how it ended."""
    try:
        reply = await action()
    except ProbeError as exc:
        outcome.failed, outcome.error = name, exc
        raise
    if reply is not None:
        outcome.replies[name] = reply
        if reply.code >= 400:
            outcome.failed = name
    return reply


def _test_message(sender: str, token: str) -> bytes:
    domain = sender.rsplit("@", 1)[-1]
    lines = [
        f"From: {sender}",
        f"To: {sender}",
        f"Subject: maildiag test {token}",
        f"Date: {email.utils.formatdate()}",
        f"Message-ID: <{token}@{domain}>",
        f"X-Maildiag-Test: {token}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This message tests the SMTP settings of the recruiting platform's account.",
        "It was sent from the custom address to itself and travels the redirection like",
        "the platform's own test mail. It can be deleted.",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


async def _open(
    context: Context,
    outcome: SessionOutcome,
    settings: SmtpSettings,
    *,
    verify: bool,
    budget: float | None = None,
) -> SMTPConnection:
    """Resolve, connect, (implicit TLS), greeting and EHLO; steps recorded in ``outcome``.

    The session may take ``budget`` seconds in all (the context's session budget by default);
    every step keeps its own timeout within it.
    """
    timeouts = context.timeouts
    budget = timeouts.session_budget if budget is None else budget
    deadline = asyncio.get_running_loop().time() + budget
    try:
        addresses = await outcome.transcript.step(
            "resolve", lambda: resolve_host(context, settings.host)
        )
    except ProbeError as exc:
        outcome.failed, outcome.error = "resolve", exc
        raise
    trust = context.trust if verify else unverified_context()
    last_error: ProbeError | None = None
    for address in addresses:
        try:
            host, port = context.endpoints.dial(address, settings.port)
        except SandboxError:
            # In the sandbox, an address no server plays is one the platform cannot reach:
            # its connection attempt would time out.
            last_error = StepTimeout("connect", timeouts.connect)
            outcome.transcript.add("*", f"{address} port {settings.port}: no route (no answer)")
            continue
        outcome.address = address

        try:
            connection = await SMTPConnection.open(
                host,
                port,
                server_name=settings.host,
                timeout=timeouts.connect,
                source=outcome.source,
                implicit_tls=trust if settings.encryption == "tls" else None,
                transcript=outcome.transcript,
                deadline=deadline,
                budget=budget,
            )
        except ProbeError as exc:
            last_error = exc
            outcome.failed = exc.step if exc.step in ("tls", "connect") else "connect"
            outcome.error = exc
            if exc.step == "tls":
                if "verification" not in str(exc):
                    await _plain_instead(context, outcome, settings, (host, port))
                raise
            continue
        outcome.failed, outcome.error = None, None
        outcome.tls = connection.tls
        break
    else:
        assert last_error is not None
        if not any(s.name == "connect" for s in outcome.steps):
            outcome.steps.append(
                Step(
                    "connect",
                    False,
                    0.0,
                    error=str(last_error),
                    timed_out=isinstance(last_error, StepTimeout),
                )
            )
        outcome.failed, outcome.error = "connect", last_error
        raise last_error
    try:
        outcome.greeting = await _timed(
            outcome,
            "banner",
            lambda: outcome.transcript.step(
                "banner", lambda: _greeting(context, outcome, connection, (host, port))
            ),
        )
        if outcome.failed:
            return connection
        outcome.ehlo = await _timed(
            outcome,
            "ehlo",
            lambda: connection.command("ehlo", f"EHLO {connection.helo_name}", timeouts.command),
        )
    except ProbeError:
        await connection.close()
        raise
    return connection


async def _greeting(
    context: Context,
    outcome: SessionOutcome,
    connection: SMTPConnection,
    dialed: tuple[str, int],
) -> Reply:
    """The greeting (step ``banner``). Without a word from the server after a few seconds, a
    second connection tries a TLS handshake at once: a port that speaks implicit TLS waits
    silently for one, and saying so then beats waiting out the whole greeting timeout."""
    timeouts = context.timeouts
    settings = outcome.settings
    early = min(timeouts.tls_probe_after, timeouts.banner)
    if settings.encryption == "tls" or await connection.wait_for_speech(early):
        return await connection.read_reply("banner", timeouts.banner, record=False)
    host, port = dialed
    probe = asyncio.ensure_future(
        second_look(
            host,
            port,
            tls=True,
            server_name=settings.host,
            # A handshake takes a few round trips; the greeting's own time bounds it too.
            timeout=min(timeouts.connect, timeouts.tls_probe_after, timeouts.banner),
            source=outcome.source,
            transcript=outcome.transcript,
        )
    )
    spoke = asyncio.ensure_future(connection.wait_for_speech(timeouts.banner - early))
    try:
        await asyncio.wait({probe, spoke}, return_when=asyncio.FIRST_COMPLETED)
        if not (probe.done() and probe.result().speaks == "tls") and await spoke:
            return await connection.read_reply("banner", timeouts.banner, record=False)
        tls = (await probe).tls
    finally:
        for task in (probe, spoke):
            task.cancel()
        await asyncio.gather(probe, spoke, return_exceptions=True)
    connection.broken = True  # nothing came: no polite QUIT, whose answer would not come
    if tls is None:
        outcome.transcript.add("*", f"no greeting within {timeouts.banner:g} s")
        raise StepTimeout("banner", timeouts.banner)
    outcome.port_speaks, outcome.port_tls = "tls", tls
    raise _SpeaksTLSAtOnce(early, settings.port, tls.version)


class _SpeaksTLSAtOnce(StepTimeout):
    """No greeting within the first seconds, and a second connection to the port completed a
    TLS handshake at once: the greeting's wait ends there, with the reason."""

    def __init__(self, waited: float, port: int, version: str) -> None:
        super().__init__("banner", waited)
        ProbeError.__init__(
            self,
            "banner",
            f"no greeting within {waited:g} s, and a second connection to port {port} "
            f"completed a TLS handshake at once ({version}): the port speaks implicit TLS",
        )


async def _plain_instead(
    context: Context, outcome: SessionOutcome, settings: SmtpSettings, dialed: tuple[str, int]
) -> None:
    """After a failed implicit-TLS handshake: does the port greet in plain text instead?"""
    timeouts = context.timeouts
    host, port = dialed
    found = await second_look(
        host,
        port,
        tls=False,
        server_name=settings.host,
        timeout=min(timeouts.banner, timeouts.command, max(timeouts.tls_probe_after, 1.0)),
        source=outcome.source,
        transcript=outcome.transcript,
    )
    if found.speaks == "plain":
        outcome.port_speaks = "plain"
        outcome.plain_greeting, outcome.plain_ehlo = found.greeting, found.ehlo


async def fetch_certificate(
    context: Context, settings: SmtpSettings, source: str | None
) -> Certificate | None:
    """The server's certificate, read without verifying it (for the report only)."""
    outcome = SessionOutcome(settings, settings.account, False, source=source)
    try:
        connection = await _open(context, outcome, settings, verify=False)
    except ProbeError:
        return None
    try:
        if (
            settings.encryption == "starttls"
            and outcome.ehlo is not None
            and "STARTTLS" in outcome.ehlo.keywords
        ):
            reply = await connection.command("starttls", "STARTTLS", context.timeouts.command)
            if reply.code == 220:
                await connection.starttls(unverified_context(), context.timeouts.command)
        der = connection.tls.peer_certificate if connection.tls else None
        decoded = connection.tls.peer_certificate_decoded if connection.tls else None
        return parse_certificate(der, decoded) if der else None
    except ProbeError:
        return None
    finally:
        await connection.close()


async def probe_session(
    context: Context, settings: SmtpSettings, sender: str, *, send_test: bool
) -> SessionOutcome:
    """One session with ``settings`` as the platform runs it; never raises for a failure."""
    source = source_for(context) if context.mode == "sandbox" else context.source_address
    outcome = SessionOutcome(settings, sender, send_test, source=source)
    if context.mode == "sandbox" and context.egress_sources:
        outcome.as_platform = True
        outcome.source_label = f"the platform's egress IP {next(iter(context.egress_sources))}"
    try:
        check_address(sender)
        check_address(settings.account)
    except ValueError as exc:
        outcome.steps.append(Step("input", False, 0.0, error=str(exc)))
        outcome.failed, outcome.error = "input", ProbeError("input", str(exc))
        return outcome
    try:
        connection = await _open(context, outcome, settings, verify=True)
    except ProbeError:
        if (
            outcome.failed == "tls"
            and isinstance(outcome.error, ProbeError)
            and "verification" in str(outcome.error)
        ):
            outcome.tls_verify_error = str(outcome.error)
            outcome.certificate = await fetch_certificate(context, settings, source)
        return outcome
    try:
        if not outcome.failed:
            await _session(context, outcome, connection, settings, sender, send_test)
    except ProbeError:
        pass
    finally:
        await connection.close()
        if outcome.tls is not None and outcome.tls.peer_certificate and outcome.certificate is None:
            outcome.certificate = parse_certificate(
                outcome.tls.peer_certificate, outcome.tls.peer_certificate_decoded
            )
    return outcome


async def _session(
    context: Context,
    outcome: SessionOutcome,
    connection: SMTPConnection,
    settings: SmtpSettings,
    sender: str,
    send_test: bool,
) -> None:
    timeouts = context.timeouts
    command = timeouts.command
    if settings.encryption == "starttls":
        assert outcome.ehlo is not None
        if "STARTTLS" not in outcome.ehlo.keywords:
            outcome.steps.append(Step("starttls", False, 0.0, error="STARTTLS is not offered"))
            outcome.failed = "starttls"
            return
        reply = await _timed(
            outcome, "starttls", lambda: connection.command("starttls", "STARTTLS", command)
        )
        if outcome.failed:
            return
        assert reply is not None
        try:
            await connection.starttls(context.trust, command)
        except ProbeError as exc:
            outcome.failed, outcome.error = "tls", exc
            if "verification" in str(exc):
                outcome.tls_verify_error = str(exc)
                outcome.certificate = await fetch_certificate(context, settings, outcome.source)
            raise
        outcome.tls = connection.tls
        outcome.ehlo = await _timed(
            outcome,
            "ehlo_tls",
            lambda: connection.command(
                "ehlo", f"EHLO {connection.helo_name}", command, record="ehlo_tls"
            ),
        )
        if outcome.failed:
            return
    mechanism = next(
        (m.upper() for m in AUTH_PREFERENCE if m.upper() in outcome.advertised_auth), None
    )
    if mechanism is None:
        outcome.steps.append(
            Step(
                "auth",
                False,
                0.0,
                error=f"no supported AUTH mechanism offered ({' '.join(outcome.advertised_auth) or 'none'})",
            )
        )
        outcome.failed = "auth"
        return
    if settings.encryption != "none" and connection.tls is None:
        # Never reached by construction; kept as the guard the SPEC's "never" asks for.
        raise ProbeError("auth", "refusing to send AUTH without TLS")
    outcome.auth_mechanism = mechanism
    await _timed(
        outcome,
        "auth",
        lambda: connection.authenticate(mechanism, settings.account, settings.password, command),
    )
    if outcome.failed:
        return
    path = envelope_path(sender)
    await _timed(outcome, "mail", lambda: connection.command("mail", f"MAIL FROM:{path}", command))
    if outcome.failed:
        return
    await _timed(outcome, "rcpt", lambda: connection.command("rcpt", f"RCPT TO:{path}", command))
    if outcome.failed:
        return
    if not send_test:
        await _timed(outcome, "rset", lambda: connection.command("rset", "RSET", command))
        return
    token = f"maildiag-{secrets.token_hex(8)}"
    # The test message names the sender's domain as the envelope does (its A-label).
    envelope = envelope_address(sender)
    outcome.test_message_id = f"<{token}@{envelope.rsplit('@', 1)[-1]}>"
    reply = await _timed(outcome, "data", lambda: connection.command("data", "DATA", command))
    if outcome.failed or reply is None or reply.code != 354:
        return
    body = _test_message(envelope, token)

    async def send_body() -> Reply:
        connection.transcript.add(
            "C", f"<test message {outcome.test_message_id}, {len(body)} bytes>"
        )
        return await connection.send_data(body, timeouts.data)

    await _timed(outcome, "data_end", send_body)
    if "data_end" in outcome.replies:
        outcome.replies["data"] = outcome.replies.pop("data_end")


# -- memo: one session per distinct setting per run --------------------------------------------


def _key(settings: SmtpSettings, sender: str, send_test: bool) -> tuple[Any, ...]:
    return (
        settings.host,
        settings.port,
        settings.encryption,
        settings.account,
        sender.casefold(),
        send_test,
    )


def _session_future(
    context: Context, settings: SmtpSettings, sender: str
) -> asyncio.Future[SessionOutcome]:
    key = _key(settings, sender, context.send_test)
    if key not in context.memo:
        context.memo[key] = asyncio.ensure_future(
            probe_session(context, settings, sender, send_test=context.send_test)
        )
    future: asyncio.Future[SessionOutcome] = context.memo[key]
    return future


def start_sessions(context: Context) -> None:
    """Start every (sub)company's session at once, so that none waits for another's."""
    for identity in context.config.identities():
        if identity.smtp is not None:
            _session_future(
                context, identity.smtp, identity.custom_address or identity.smtp.account
            )


async def session_for(context: Context, settings: SmtpSettings, sender: str) -> SessionOutcome:
    """The run's session for these settings: probed once, shared by every check."""
    return await asyncio.shield(_session_future(context, settings, sender))


# -- pure tier --------------------------------------------------------------------------------


def _path(profile: PlatformProfile) -> str:
    ui = profile.ui
    return f"{ui.settings_path} > {ui.use_custom_address} Yes > {ui.use_for_sending} Yes"


def _setting(settings: SmtpSettings, profile: PlatformProfile) -> str:
    return f"{settings.host} port {settings.port} with Encryption {profile.encryption_label(settings.encryption)}"


def _not_reached(check_id: str, outcome: SessionOutcome) -> Outcome:
    return Outcome(
        Status.SKIP,
        "Not reached",
        f"The session stopped at step '{outcome.failed}' before {check_id} could be tested; "
        "see the failing check above.",
    )


def _error_text(outcome: SessionOutcome) -> str:
    step = outcome.step(outcome.failed or "")
    if step is None:
        return ""
    return step.error or step.reply or ""


def classify_connect(outcome: SessionOutcome, profile: PlatformProfile) -> Outcome:
    """TCP connection and greeting."""
    settings = outcome.settings
    label = profile.encryption_label
    failed = outcome.failed
    where = f"{settings.host} port {settings.port}"
    if failed == "input":
        return Outcome(
            Status.FAIL,
            "Address unsafe on an SMTP command line",
            _error_text(outcome),
            Cause.UNKNOWN,
            "Remove control characters from the custom address and the account.",
        )
    if failed == "resolve":
        return Outcome(
            Status.FAIL,
            f"{settings.host} does not resolve",
            _error_text(outcome),
            Cause.DNS_FAILURE,
            f"Check the Host in {_path(profile)}: enter the SMTP server's name exactly as your mail provider documents it.",
        )
    if failed == "connect":
        error = outcome.error
        if isinstance(error, StepTimeout):
            return Outcome(
                Status.FAIL,
                f"No answer from {where}",
                f"The TCP connection did not complete within {error.timeout:g} s: "
                "a firewall drops the connection, or nothing listens there.",
                Cause.CONNECTION_TIMEOUT,
                f"Check Host and Port in {_path(profile)}; make sure the firewall in front of {settings.host} lets the "
                f"platform's egress IPs ({', '.join(str(n) for n in profile.egress_ips)}) reach port {settings.port}.",
            )
        return Outcome(
            Status.FAIL,
            f"{where} refuses connections",
            _error_text(outcome),
            Cause.CONNECTION_REFUSED,
            f"Nothing accepts connections on port {settings.port} of {settings.host}. Check Port in {_path(profile)}: "
            f"submission is usually 587 ({label('starttls')}) or 465 ({label('tls')}).",
        )
    greeting = outcome.replies.get("banner")
    banner_step = outcome.step("banner")
    if failed == "banner" and banner_step is not None:
        if outcome.port_speaks == "tls":
            version = outcome.port_tls.version if outcome.port_tls else "TLS"
            return Outcome(
                Status.FAIL,
                f"Port {settings.port} speaks TLS at once: choose {label('tls')} (implicit TLS)",
                f"No greeting came on a plain connection, and a second connection to port "
                f"{settings.port} completed a TLS handshake at once ({version}): the server "
                "waits for TLS before it says a word (implicit TLS, RFC 8314), so Encryption "
                f"{label(settings.encryption)} never gets a greeting.",
                Cause.TLS_MISMATCH,
                f"In {_path(profile)}, set Port {settings.port} and Encryption {label('tls')} "
                f"(implicit TLS); or Port 587 with Encryption {label('starttls')} if the "
                "server offers it (see smtp.settings_probe).",
            )
        if banner_step.timed_out:
            if settings.port == 465 and settings.encryption != "tls":
                return Outcome(
                    Status.FAIL,
                    f"Port 465 expects TLS first, Encryption is {label(settings.encryption)}",
                    "No greeting came: on port 465 the server waits for a TLS handshake before it speaks (implicit TLS, RFC 8314).",
                    Cause.TLS_MISMATCH,
                    f"In {_path(profile)}, choose Encryption {label('tls')} on port 465, or Port 587 with Encryption {label('starttls')}.",
                )
            return Outcome(
                Status.FAIL,
                f"{where} sends no greeting",
                f"The connection opened but no greeting came: {banner_step.error}. "
                "Servers that silently drop clients they do not allow behave like this.",
                Cause.CONNECTION_TIMEOUT,
                f"Check that {settings.host} allows the platform's egress IPs ({', '.join(str(n) for n in profile.egress_ips)}); see allowlist.reachability.",
            )
        if greeting is not None and greeting.code >= 500:
            egress = ", ".join(str(n) for n in profile.egress_ips)
            if outcome.as_platform:
                return Outcome(
                    Status.FAIL,
                    f"{where} refuses the platform's address",
                    f"Greeting to {outcome.source_label}: {greeting}",
                    Cause.CLIENT_IP_REJECTED,
                    f"Allow the platform's egress IPs ({egress}) on {settings.host}; "
                    "see allowlist.coverage for snippets.",
                )
            return Outcome(
                Status.FAIL,
                f"{where} refuses connections from this machine",
                f"Greeting: {greeting}. The server admits only listed client addresses; this "
                "test ran from an address it does not list, so it says nothing about the "
                "platform's.",
                Cause.CLIENT_IP_REJECTED,
                "Run the test from an address the server allows, and make sure it allows the "
                f"platform's egress IPs ({egress}); see allowlist.coverage.",
            )
        if greeting is not None and greeting.code >= 400:
            return Outcome(
                Status.FAIL,
                f"{where} is temporarily unavailable",
                f"Greeting: {greeting}",
                Cause.TEMPORARY_FAILURE,
                "Try again later; if it persists, the server is overloaded or rate-limits new connections.",
            )
        reason = banner_step.error or ""
        cause = (
            Cause.UNKNOWN
            if isinstance(outcome.error, SMTPProtocolError)
            else Cause.CONNECTION_REFUSED
        )
        return Outcome(
            Status.FAIL,
            f"{where} closed or garbled the greeting",
            reason,
            cause,
            f"The server at {settings.host} port {settings.port} does not speak SMTP correctly; check Host and Port in {_path(profile)}.",
        )
    if outcome.failed in ("ehlo", "ehlo_tls"):
        reply = outcome.replies.get(outcome.failed)
        ehlo_step = outcome.step(outcome.failed)
        if reply is None and ehlo_step is not None and ehlo_step.timed_out:
            return Outcome(
                Status.FAIL,
                f"{where} does not answer EHLO in time",
                f"The server greeted ({greeting}); its answer to EHLO did not come in time: "
                f"{ehlo_step.error}.",
                Cause.CONNECTION_TIMEOUT,
                f"{settings.host} answers too slowly for the platform; check its load and "
                "any tarpitting or delay it applies to new clients (Exchange tarpit, Postfix "
                "smtpd_error_sleep_time).",
            )
        if reply is None:
            return Outcome(
                Status.FAIL,
                f"{where} hangs up after its greeting",
                f"The server greeted ({greeting}) and then closed the connection at EHLO: "
                f"{_error_text(outcome)}. Overloaded servers and filters that drop clients "
                "after the greeting behave like this.",
                Cause.CONNECTION_REFUSED,
                f"Check the logs of {settings.host} for why it drops the platform's sessions "
                "(connection limits, a content or reputation filter).",
            )
        return Outcome(
            Status.FAIL,
            f"{where} refuses EHLO",
            f"EHLO answered {reply}.",
            Cause.TEMPORARY_FAILURE if reply.code < 500 else Cause.POLICY_REJECTED,
            f"{settings.host} must accept EHLO from the platform; check its HELO/EHLO restrictions.",
        )
    connect = outcome.step("connect")
    if connect is None or not connect.ok:
        return Outcome(
            Status.ERROR, "The connection could not be tested", _error_text(outcome), Cause.UNKNOWN
        )
    timing = f"TCP connect {connect.elapsed_ms:.0f} ms"
    if banner_step is not None:
        timing += f", greeting after {banner_step.elapsed_ms:.0f} ms"
    if greeting is None:
        return Outcome(
            Status.PASS,
            f"TCP connection to {where} works",
            f"{timing}; the greeting was not reached because TLS failed first (see smtp.tls).",
        )
    return Outcome(Status.PASS, f"{where} answers", f"{timing}: {greeting}")


def classify_tls(
    outcome: SessionOutcome, profile: PlatformProfile, now: datetime.datetime | None = None
) -> Outcome:
    """STARTTLS / implicit TLS: offered, handshake, certificate."""
    settings = outcome.settings
    label = profile.encryption_label
    path = _path(profile)
    if settings.encryption == "none":
        offered = outcome.ehlo is not None and "STARTTLS" in outcome.ehlo.keywords
        return Outcome(
            Status.WARN,
            "No encryption configured",
            "Encryption is None: the password and every candidate mail travel in clear text."
            + (" The server offers STARTTLS." if offered else ""),
            remediation=f"In {path}, choose Encryption {label('starttls')}"
            + (
                " (the server offers it)."
                if offered
                else f" on port 587 or {label('tls')} on port 465."
            ),
        )
    tls_step = outcome.step("tls")
    if outcome.failed == "starttls":
        reply = outcome.replies.get("starttls")
        if reply is None:
            return Outcome(
                Status.FAIL,
                f"STARTTLS not offered on port {settings.port}",
                f"The server's EHLO answer lists no STARTTLS: {outcome.ehlo}. The platform will not send the password unencrypted.",
                Cause.TLS_MISMATCH,
                f"Enable STARTTLS on {settings.host} port {settings.port}, or in {path} choose Port 465 with Encryption {label('tls')} if the server offers it (see smtp.settings_probe).",
            )
        return Outcome(
            Status.FAIL,
            "STARTTLS refused",
            f"STARTTLS answered {reply}",
            Cause.TLS_MISMATCH,
            f"The server offers STARTTLS but refuses it; check its TLS configuration, or choose Port 465 with Encryption {label('tls')}.",
        )
    if tls_step is None:
        return _not_reached("smtp.tls", outcome)
    if not tls_step.ok:
        if tls_step.timed_out:
            return Outcome(
                Status.FAIL,
                "TLS handshake timed out",
                tls_step.error or "",
                Cause.TLS_MISMATCH,
                f"In {path}, check Encryption: {_setting(settings, profile)}; the standard pairs are 587 with {label('starttls')} and 465 with {label('tls')}.",
            )
        if outcome.tls_verify_error:
            return _classify_certificate_failure(outcome, profile)
        if settings.encryption == "tls" and outcome.port_speaks == "plain":
            return _plain_where_tls_was_asked(outcome, profile, tls_step)
        if settings.encryption == "tls" and settings.port != 465:
            return Outcome(
                Status.FAIL,
                f"Encryption {label('tls')} on port {settings.port}: the server does not speak TLS there",
                f"The TLS handshake failed ({tls_step.error}); port {settings.port} speaks plain SMTP first and upgrades with STARTTLS.",
                Cause.TLS_MISMATCH,
                f"Encryption is set to {label('tls')} on port {settings.port}; this server speaks STARTTLS there: choose {label('starttls')}, or port 465 with {label('tls')}.",
            )
        return Outcome(
            Status.FAIL,
            "TLS handshake failed",
            tls_step.error or "",
            Cause.TLS_MISMATCH,
            f"Check Encryption in {path}; see smtp.settings_probe for a combination that works.",
        )
    tls = outcome.tls
    cert = outcome.certificate
    version = tls.version if tls else "TLS"
    detail = f"{version}, {tls.cipher if tls else ''}"
    if cert is not None:
        detail += f"; certificate for {', '.join(cert.names) or cert.subject} issued by {cert.issuer}, valid until {cert.not_after:%Y-%m-%d}"
        days = cert.days_left(now)
        if days < EXPIRY_WARN_DAYS:
            return Outcome(
                Status.WARN,
                f"Certificate expires in {days} days",
                detail,
                remediation=f"Renew the certificate of {settings.host} before {cert.not_after:%Y-%m-%d}; once it expires the platform can no longer connect.",
            )
    if version in ("TLSv1", "TLSv1.1", "SSLv3"):
        return Outcome(
            Status.WARN,
            f"Outdated {version}",
            detail,
            remediation=f"Enable TLS 1.2 or 1.3 on {settings.host}.",
        )
    return Outcome(Status.PASS, f"{version} with a valid certificate", detail)


def _plain_where_tls_was_asked(
    outcome: SessionOutcome, profile: PlatformProfile, tls_step: Step
) -> Outcome:
    """Implicit TLS configured on a port whose server greets in plain text at once."""
    settings = outcome.settings
    label = profile.encryption_label
    port = settings.port
    starttls = outcome.plain_ehlo is not None and "STARTTLS" in outcome.plain_ehlo.keywords
    detail = (
        f"The TLS handshake failed ({tls_step.error}), and a second connection got a plain-text "
        f"greeting at once ({outcome.plain_greeting}): port {port} speaks plain SMTP first"
    )
    if starttls:
        return Outcome(
            Status.FAIL,
            f"Encryption {label('tls')} on port {port}: the server does not speak TLS there",
            detail + " and upgrades with STARTTLS (it offers STARTTLS after EHLO).",
            Cause.TLS_MISMATCH,
            f"Encryption is set to {label('tls')} on port {port}; this server speaks STARTTLS "
            f"there: choose {label('starttls')}, or port 465 with {label('tls')}.",
        )
    return Outcome(
        Status.FAIL,
        f"Encryption {label('tls')} on port {port}: the server does not speak TLS there",
        detail + ", and it does not offer STARTTLS either.",
        Cause.TLS_MISMATCH,
        f"Encryption is set to {label('tls')} on port {port}, where this server speaks plain "
        f"SMTP only: in {_path(profile)}, choose the port on which it speaks TLS (465 with "
        f"{label('tls')}, or 587 with {label('starttls')}; see smtp.settings_probe).",
    )


def _classify_certificate_failure(outcome: SessionOutcome, profile: PlatformProfile) -> Outcome:
    settings = outcome.settings
    error = outcome.tls_verify_error or ""
    cert = outcome.certificate
    about = ""
    if cert is not None:
        about = f" The certificate names {', '.join(cert.names) or cert.subject}, issued by {cert.issuer}, valid until {cert.not_after:%Y-%m-%d}."
    if "expired" in error:
        title, fix = (
            "Certificate expired",
            f"Renew the certificate of {settings.host}; until then every connection from the platform fails.",
        )
    elif "self-signed" in error or "self signed" in error:
        title, fix = (
            "Self-signed certificate",
            f"Install a certificate for {settings.host} from a public certificate authority (for example Let's Encrypt); the platform trusts only those.",
        )
    elif "mismatch" in error:
        title = f"Certificate is not for {settings.host}"
        fix = (
            f"Enter the host name the certificate is issued for as Host in {_path(profile)}"
            + (f" (for example {cert.names[0]})" if cert and cert.names else "")
            + f", or install a certificate that names {settings.host}."
        )
    elif "not yet valid" in error:
        title, fix = (
            "Certificate not yet valid",
            f"Check the clock of {settings.host} and the certificate's start date.",
        )
    elif "local issuer" in error:
        title, fix = (
            "Certificate chain incomplete or untrusted",
            f"Configure {settings.host} to send the intermediate certificates, and use a certificate from a public authority.",
        )
    else:
        title, fix = (
            "Certificate not trusted",
            f"Install a valid certificate for {settings.host} from a public authority.",
        )
    return Outcome(Status.FAIL, title, error + "." + about, Cause.TLS_CERTIFICATE, fix)


def _provider_rule(outcome: SessionOutcome, provider: Provider | None, step: str) -> Outcome | None:
    reply = outcome.replies.get(step)
    if provider is None or reply is None:
        return None
    rule = provider.rule_for(step, reply.enhanced, reply.text)
    if rule is None:
        return None
    text = rule.remediation.format(account=outcome.settings.account, sender=outcome.sender)
    return Outcome(
        Status.FAIL,
        f"{provider.name} refused: {reply}",
        f"{step.upper()} answered {reply}",
        rule.cause,
        text,
    )


def classify_auth(
    outcome: SessionOutcome, profile: PlatformProfile, provider: Provider | None = None
) -> Outcome:
    """One AUTH attempt: mechanism, result, never in clear text when encryption was asked for."""
    settings = outcome.settings
    path = _path(profile)
    step = outcome.step("auth")
    if step is None:
        return _not_reached("smtp.auth", outcome)
    if outcome.auth_mechanism is None:
        offered = " ".join(outcome.advertised_auth) or "none"
        return Outcome(
            Status.FAIL,
            "No usable AUTH mechanism",
            f"The server offers AUTH {offered}; the platform logs in with PLAIN or LOGIN.",
            Cause.AUTH_MECHANISM if outcome.advertised_auth else Cause.AUTH_DISABLED,
            f"Enable AUTH PLAIN or LOGIN for submission on {settings.host} port {settings.port} (after TLS).",
        )
    reply = outcome.replies.get("auth")
    if step.ok and reply is not None:
        clear = " in clear text (Encryption None)" if settings.encryption == "none" else " over TLS"
        return Outcome(
            Status.PASS,
            f"{settings.account} logged in with AUTH {outcome.auth_mechanism}",
            f"{reply}; one attempt{clear}.",
        )
    matched = _provider_rule(outcome, provider, "auth")
    if matched is not None:
        return matched
    if reply is None:
        return Outcome(
            Status.ERROR,
            "AUTH got no answer",
            step.error or "",
            Cause.CONNECTION_TIMEOUT if step.timed_out else Cause.UNKNOWN,
            "Run the check again; if it persists, the server stalls during login.",
        )
    if reply.code == 530 and (reply.enhanced == "5.7.0" and "starttls" in reply.text.lower()):
        return Outcome(
            Status.FAIL,
            "The server requires STARTTLS before AUTH",
            str(reply),
            Cause.STARTTLS_REQUIRED,
            f"In {path}, choose Encryption {profile.encryption_label('starttls')}.",
        )
    if reply.code in (454, 421, 451) or (reply.enhanced or "").startswith("4."):
        return Outcome(
            Status.FAIL,
            "Login temporarily refused",
            str(reply),
            Cause.TEMPORARY_FAILURE,
            "The server could not check the password just now (its authentication backend failed or it rate-limits); try again later.",
        )
    if reply.code == 504 or reply.enhanced == "5.5.4":
        return Outcome(
            Status.FAIL,
            f"AUTH {outcome.auth_mechanism} not accepted",
            str(reply),
            Cause.AUTH_MECHANISM,
            f"Enable AUTH PLAIN or LOGIN on {settings.host}.",
        )
    if reply.code == 534 or reply.enhanced == "5.7.9":
        return Outcome(
            Status.FAIL,
            "The server wants a stronger login",
            str(reply),
            Cause.AUTH_MECHANISM,
            "The provider requires an app password or OAuth for this account; create an app password and enter it as Password.",
        )
    return Outcome(
        Status.FAIL,
        f"Login of {settings.account} refused",
        str(reply),
        Cause.AUTH_FAILED,
        f"Check Account and Password in {path}: the Account must be the mailbox's full address ({settings.account}) and the "
        "password its current one. One attempt was made, so the mailbox's lockout counter moved by one.",
    )


def classify_sender(
    outcome: SessionOutcome, profile: PlatformProfile, provider: Provider | None = None
) -> Outcome:
    """MAIL FROM the custom address (and, with a test message, DATA)."""
    settings = outcome.settings
    sender = outcome.sender
    path = _path(profile)
    mail = outcome.step("mail")
    if mail is None:
        return _not_reached("smtp.sender", outcome)
    for step in ("mail", "rcpt", "data"):
        matched = (
            _provider_rule(outcome, provider, step)
            if outcome.failed == step or (step == "data" and outcome.failed == "data_end")
            else None
        )
        if matched is not None:
            return matched
    failed = outcome.failed
    if failed == "mail":
        reply = outcome.replies.get("mail")
        if reply is None:
            return Outcome(
                Status.ERROR,
                "MAIL FROM got no answer",
                _error_text(outcome),
                Cause.CONNECTION_TIMEOUT,
            )
        if reply.code >= 500:
            return Outcome(
                Status.FAIL,
                f"The server refuses {sender} as sender for {settings.account}",
                str(reply),
                Cause.SENDER_NOT_OWNED,
                f"In {path}, set Account to {sender} (the {profile.ui.custom_address_label}) with that mailbox's password, "
                f"or give {settings.account} the right to send as {sender} on the server.",
            )
        return Outcome(
            Status.FAIL,
            "MAIL FROM temporarily refused",
            str(reply),
            Cause.TEMPORARY_FAILURE,
            "Try again later.",
        )
    if failed == "rcpt":
        reply = outcome.replies.get("rcpt")
        if reply is not None and reply.enhanced == "5.1.1":
            return Outcome(
                Status.FAIL,
                f"{sender} does not exist on the server",
                str(reply),
                Cause.RECIPIENT_UNKNOWN,
                f"Create the mailbox {sender}, or correct the {profile.ui.custom_address_label}.",
            )
        if reply is not None and reply.code >= 500:
            return Outcome(
                Status.FAIL,
                "The server does not relay for this login",
                str(reply),
                Cause.RELAY_DENIED,
                f"Allow authenticated clients to relay on {settings.host} (Postfix: permit_sasl_authenticated in smtpd_relay_restrictions).",
            )
        return Outcome(
            Status.FAIL,
            "RCPT TO refused",
            str(outcome.replies.get("rcpt") or _error_text(outcome)),
            Cause.TEMPORARY_FAILURE,
            "Try again later.",
        )
    if failed in ("data", "data_end"):
        reply = outcome.replies.get("data")
        return Outcome(
            Status.FAIL,
            "The test message was refused",
            str(reply or _error_text(outcome)),
            Cause.SENDER_NOT_OWNED if reply and reply.code >= 500 else Cause.TEMPORARY_FAILURE,
            f"Check that {settings.account} may send as {sender}.",
        )
    if outcome.send_test:
        data = outcome.replies.get("data")
        return Outcome(
            Status.PASS,
            f"{settings.account} sent a test message as {sender}",
            f"MAIL FROM, RCPT TO and DATA accepted ({data}); message {outcome.test_message_id} was sent to {sender} and travels the redirection.",
        )
    if provider is not None and provider.sender_checked_after_data:
        return Outcome(
            Status.WARN,
            f"{sender} accepted at MAIL FROM; {provider.name} decides only after DATA",
            f"{provider.name} checks Send As rights only once the message is sent (554 5.2.252 SendAsDenied); "
            "without a test message this cannot be proven.",
            remediation="Run again with --send-test: a test message goes from the custom address to itself.",
        )
    return Outcome(
        Status.PASS,
        f"{sender} accepted as sender for {settings.account}",
        "MAIL FROM and RCPT TO accepted; no message was sent (with --send-test a test message would prove DATA too).",
    )


def classify_provider(
    outcome: SessionOutcome | None, settings: SmtpSettings, mx_hosts: list[str]
) -> Outcome:
    """The provider behind the SMTP host and MX, and its known constraints."""
    banner = str(outcome.greeting) if outcome and outcome.greeting else None
    recognition = recognise(smtp_host=settings.host, mx_hosts=mx_hosts, banner=banner)
    provider = recognition.provider
    if provider is None:
        return Outcome(
            Status.PASS,
            "Generic SMTP server",
            f"{settings.host} is not a host of a known provider; no provider-specific constraints apply.",
        )
    relay = provider.relay_host(settings.host)
    submission = provider.submission
    if relay is not None:
        return Outcome(
            Status.FAIL,
            f"{settings.host} does not take the platform's login",
            relay.why.format(host=settings.host),
            Cause.AUTH_DISABLED,
            f"Use {provider.name}'s submission endpoint: Host {submission.host}, Port {submission.port}, Encryption {submission.encryption}.",
        )
    by = "; ".join(recognition.evidence)
    only_mx = all(e.startswith("MX") for e in recognition.evidence)
    needs = "; ".join(provider.requirements)
    if only_mx:
        return Outcome(
            Status.PASS,
            f"Mail hosted at {provider.name}; SMTP through {settings.host}",
            f"Recognised by {by}. The SMTP host is not {provider.name}'s submission endpoint ({submission.host}); if it relays to {provider.name}, these apply too: {needs}.",
        )
    if outcome is not None and outcome.failed in ("auth", "mail", "data", "data_end"):
        matched = _provider_rule(
            outcome, provider, "data" if outcome.failed == "data_end" else outcome.failed
        )
        if matched is not None:
            return matched
    return Outcome(Status.PASS, provider.name, f"Recognised by {by}. Known requirements: {needs}.")


# -- registered checks ------------------------------------------------------------------------


def _no_smtp(check_id: str, subject: str) -> Finding:
    return Finding(
        check=check_id,
        status=Status.SKIP,
        subject=subject,
        title="No SMTP settings of its own",
        detail="This (sub)company has no SMTP settings; sender.resolution shows which route its mail takes.",
    )


async def _mx_hosts(context: Context, address: str | None) -> list[str]:
    if not address:
        return []
    # Through the run's queries: once its resolver is known broken, not asked again.
    answer = await DNSQueries.of(context)(address.rsplit("@", 1)[-1], "MX")
    # "10 mx.example.": the exchange, as the provider is recognised by its name.
    return [r.split()[-1].rstrip(".").lower() for r in answer.records]


def _provider_of(settings: SmtpSettings, outcome: SessionOutcome) -> Provider | None:
    banner = str(outcome.greeting) if outcome.greeting else None
    return recognise(smtp_host=settings.host, banner=banner).provider


async def _session_check(
    context: Context,
    check_id: str,
    classify: Callable[[SessionOutcome, PlatformProfile, Provider | None], Outcome],
) -> list[Finding]:
    findings = []
    profile = context.config.profile
    start_sessions(context)
    for identity in context.config.identities():
        subject, settings, address = identity.name, identity.smtp, identity.custom_address
        if settings is None:
            findings.append(_no_smtp(check_id, subject))
            continue
        outcome = await session_for(context, settings, address or settings.account)
        result = classify(outcome, profile, _provider_of(settings, outcome))
        if (
            context.mode == "sandbox"
            and outcome.failed == "resolve"
            and result.cause is Cause.DNS_FAILURE
            and refused(str(outcome.error))
        ):
            result = unplayed_outcome(result, [settings.host])
        findings.append(result.finding(check_id, subject, outcome.evidence()))
    return findings


@check("smtp.connect", flow="outbound", title="SMTP server answers")
async def connect(context: Context) -> list[Finding]:
    return await _session_check(context, "smtp.connect", lambda o, p, _: classify_connect(o, p))


@check("smtp.tls", flow="outbound", title="TLS and certificate")
async def tls(context: Context) -> list[Finding]:
    findings = await _session_check(context, "smtp.tls", lambda o, p, _: classify_tls(o, p))
    return findings


@check("smtp.auth", flow="outbound", title="SMTP login")
async def auth(context: Context) -> list[Finding]:
    return await _session_check(context, "smtp.auth", classify_auth)


@check("smtp.sender", flow="outbound", title="Sending as the custom address")
async def sender(context: Context) -> list[Finding]:
    return await _session_check(context, "smtp.sender", classify_sender)


@check("smtp.provider", flow="outbound", title="Mail provider constraints")
async def provider(context: Context) -> list[Finding]:
    start_sessions(context)
    findings = []
    for identity in context.config.identities():
        subject, settings, address = identity.name, identity.smtp, identity.custom_address
        if settings is None:
            findings.append(_no_smtp("smtp.provider", subject))
            continue
        outcome = await session_for(context, settings, address or settings.account)
        mx = await _mx_hosts(context, address)
        result = classify_provider(outcome, settings, mx)
        findings.append(
            result.finding("smtp.provider", subject, {"smtp_host": settings.host, "mx": mx})
        )
    return findings


# -- settings probe ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Alternative:
    """What one host/port/encryption combination did, without logging in."""

    port: int
    encryption: str
    works: bool
    summary: str


async def probe_alternative(
    context: Context, settings: SmtpSettings, port: int, encryption: str
) -> Alternative:
    """Connect, TLS (verified), EHLO: does this combination offer AUTH? No AUTH is sent."""
    trial = settings.on_port(port, encryption)
    source = source_for(context) if context.mode == "sandbox" else context.source_address
    outcome = SessionOutcome(trial, settings.account, False, source=source)
    try:
        connection = await _open(context, outcome, trial, verify=True)
    except ProbeError as exc:
        return Alternative(port, encryption, False, str(exc))
    try:
        if outcome.failed:
            return Alternative(
                port, encryption, False, f"greeting: {outcome.replies.get('banner')}"
            )
        if encryption == "starttls":
            if outcome.ehlo is None or "STARTTLS" not in outcome.ehlo.keywords:
                return Alternative(port, encryption, False, "STARTTLS not offered")
            reply = await connection.command("starttls", "STARTTLS", context.timeouts.command)
            if reply.code != 220:
                return Alternative(port, encryption, False, f"STARTTLS answered {reply}")
            await connection.starttls(context.trust, context.timeouts.command)
            outcome.ehlo = await connection.command(
                "ehlo", f"EHLO {connection.helo_name}", context.timeouts.command
            )
        mechanisms = outcome.advertised_auth
        tls = connection.tls
        if not mechanisms:
            return Alternative(port, encryption, False, "no AUTH offered")
        return Alternative(
            port, encryption, True, f"{tls.version if tls else ''}, AUTH {' '.join(mechanisms)}"
        )
    except ProbeError as exc:
        return Alternative(port, encryption, False, str(exc))
    finally:
        await connection.close()


def classify_settings_probe(
    outcome: SessionOutcome, alternatives: list[Alternative], profile: PlatformProfile
) -> Outcome:
    """Which combination works when the configured one does not."""
    settings = outcome.settings
    label = profile.encryption_label
    if outcome.tls_verify_error:
        return Outcome(
            Status.PASS,
            f"Configured {_setting(settings, profile)} is right; the certificate is not",
            "The server speaks the configured encryption on this port; only its certificate fails (see smtp.tls), "
            "which no other port or encryption would fix.",
        )
    if outcome.failed in ("input", "resolve") or _refused_at_greeting(outcome):
        return Outcome(
            Status.SKIP,
            "Not a port or encryption problem",
            f"The session stopped at step '{outcome.failed}', which no other port or encryption "
            "would change; see smtp.connect.",
        )
    if not _needs_alternatives(outcome):
        return Outcome(
            Status.PASS,
            f"Configured {_setting(settings, profile)} works",
            "The configured combination connects, encrypts and offers AUTH; no other was tried.",
        )
    # The same port with the other encryption is the smallest change for whoever fixes it.
    working = sorted((a for a in alternatives if a.works), key=lambda a: a.port != settings.port)
    tried = "; ".join(
        f"{a.port}/{label(a.encryption)}: {'works' if a.works else a.summary}" for a in alternatives
    )
    if working:
        best = working[0]
        return Outcome(
            Status.FAIL,
            f"Use port {best.port} with Encryption {label(best.encryption)}",
            f"Configured {_setting(settings, profile)} fails at step '{outcome.failed}'. Tried: {tried}.",
            Cause.TLS_MISMATCH,
            f"In {_path(profile)}, set Port {best.port} and Encryption {label(best.encryption)} ({best.summary}).",
        )
    return Outcome(
        Status.FAIL,
        f"No combination works on {settings.host}",
        f"Tried: {tried}.",
        Cause.CONNECTION_TIMEOUT
        if all("timed out" in a.summary or "no route" in a.summary for a in alternatives)
        else Cause.CONNECTION_REFUSED,
        f"{settings.host} offers no submission service the platform can use; check Host in {_path(profile)} and the server's firewall.",
    )


def _refused_at_greeting(outcome: SessionOutcome) -> bool:
    greeting = outcome.replies.get("banner")
    return outcome.failed == "banner" and greeting is not None and greeting.code >= 500


def _needs_alternatives(outcome: SessionOutcome) -> bool:
    """Whether the configured combination failed in a way another port or encryption may fix."""
    if _refused_at_greeting(outcome) or outcome.tls_verify_error:
        return False
    return outcome.failed in ("connect", "tls", "banner", "ehlo", "starttls", "ehlo_tls") or (
        outcome.failed == "auth" and outcome.auth_mechanism is None
    )


@check("smtp.settings_probe", flow="outbound", title="A working host/port/encryption")
async def settings_probe(context: Context) -> list[Finding]:
    start_sessions(context)
    findings = []
    profile = context.config.profile
    for identity in context.config.identities():
        subject, settings, address = identity.name, identity.smtp, identity.custom_address
        if settings is None:
            findings.append(_no_smtp("smtp.settings_probe", subject))
            continue
        outcome = await session_for(context, settings, address or settings.account)
        alternatives: list[Alternative] = []
        if _needs_alternatives(outcome):
            trials = [
                (p, e) for p, e in ALTERNATIVES if (p, e) != (settings.port, settings.encryption)
            ]
            alternatives = list(
                await asyncio.gather(
                    *(probe_alternative(context, settings, p, e) for p, e in trials)
                )
            )
        result = classify_settings_probe(outcome, alternatives, profile)
        evidence = {
            "configured": f"{settings.port}/{settings.encryption}",
            "tried": [a.__dict__ for a in alternatives],
        }
        findings.append(result.finding("smtp.settings_probe", subject, evidence))
    return findings
