"""The SMTP session under the smtp checks: one session per distinct setting, as the platform
runs it, and the second looks that name what a port speaks.

:func:`probe_session` runs one session (host, port, encryption, account, sender) through
:class:`~diagnostics.smtpclient.SMTPConnection`, which records each step with its timing and
reply, into a :class:`SessionOutcome`. :func:`session_for` memoises it in the context, so the
session checks share it and the account sees exactly one AUTH; :func:`start_sessions` starts
every (sub)company's at once. Each step has its timeout and the session a budget
(``Timeouts.session_budget``): a slow but working server passes, a dead port costs one
connect timeout. When no greeting comes within ``Timeouts.tls_probe_after`` seconds, a second
connection asks whether the port speaks TLS at once; when an implicit-TLS handshake fails,
whether it greets in plain text. :func:`probe_alternative` tries another port and encryption
without logging in, for ``smtp.settings_probe``. A failure never raises: it is noted in the
outcome, which the classifiers of :mod:`diagnostics.checks.smtp` turn into findings.

It sits above the SMTP client, which dials through :mod:`diagnostics.net`; that package
therefore does not import it.
"""

from __future__ import annotations

import asyncio
import email.utils
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diagnostics.context import Context
from diagnostics.errors import ProbeError, SandboxError, StepTimeout
from diagnostics.fields import envelope_address
from diagnostics.net.dial import Dialer
from diagnostics.net.smtp import AUTH_PREFERENCE
from diagnostics.parse.tlscert import Certificate, parse_certificate
from diagnostics.smtpclient import (
    Reply,
    SMTPConnection,
    Step,
    TLSInfo,
    Transcript,
    check_address,
    envelope_path,
    second_look,
    unverified_context,
)
from diagnostics.smtprecord import succeeded

if TYPE_CHECKING:
    # Types only: `maildiag smtp` runs these checks without loading pydantic's models.
    from diagnostics.config import SmtpSettings


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
        if not succeeded(name, reply.code):
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


# -- another port and encryption, for smtp.settings_probe ------------------------------------


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
