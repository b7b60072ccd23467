"""``smtp.connect`` and ``smtp.tls``: whether the server answers (connection, greeting, EHLO)
and how the session is encrypted (STARTTLS or implicit TLS, the handshake, the certificate).

:func:`classify_connect` and :func:`classify_tls` turn the run's
:class:`~diagnostics.net.session.SessionOutcome` into an outcome with a cause and a remediation
naming the setting and the value to try; the registrations run them over every (sub)company.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from diagnostics.checks.smtp.common import (
    describe_setting,
    error_text,
    not_reached,
    session_check,
    settings_path,
)
from diagnostics.context import Context
from diagnostics.errors import StepTimeout
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net.session import SessionOutcome
from diagnostics.registry import check
from diagnostics.smtpclient import SMTPProtocolError, Step

if TYPE_CHECKING:
    from diagnostics.profiles import PlatformProfile

EXPIRY_WARN_DAYS = 21


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
            error_text(outcome),
            Cause.UNKNOWN,
            "Remove control characters from the custom address and the account.",
        )
    if failed == "resolve":
        return Outcome(
            Status.FAIL,
            f"{settings.host} does not resolve",
            error_text(outcome),
            Cause.DNS_FAILURE,
            f"Check the Host in {settings_path(profile)}: enter the SMTP server's name exactly as your mail provider documents it.",
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
                f"Check Host and Port in {settings_path(profile)}; make sure the firewall in front of {settings.host} lets the "
                f"platform's egress IPs ({', '.join(str(n) for n in profile.egress_ips)}) reach port {settings.port}.",
            )
        return Outcome(
            Status.FAIL,
            f"{where} refuses connections",
            error_text(outcome),
            Cause.CONNECTION_REFUSED,
            f"Nothing accepts connections on port {settings.port} of {settings.host}. Check Port in {settings_path(profile)}: "
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
                f"In {settings_path(profile)}, set Port {settings.port} and Encryption {label('tls')} "
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
                    f"In {settings_path(profile)}, choose Encryption {label('tls')} on port 465, or Port 587 with Encryption {label('starttls')}.",
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
        # Closed at once, before a byte: the way a deny rule (tcpwrappers, a firewall's reset)
        # refuses. Garbage, or a close in the middle of the greeting, breaks the protocol: no
        # refusal, so no cause that says one.
        heard = any(line.side == "S" for line in outcome.transcript.lines)
        cause = (
            Cause.UNKNOWN
            if isinstance(outcome.error, SMTPProtocolError) or heard
            else Cause.CONNECTION_REFUSED
        )
        return Outcome(
            Status.FAIL,
            f"{where} closed or garbled the greeting",
            reason,
            cause,
            f"The server at {settings.host} port {settings.port} does not speak SMTP correctly; check Host and Port in {settings_path(profile)}.",
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
        if reply is None and (
            isinstance(outcome.error, SMTPProtocolError) or _answered_in_part(outcome)
        ):
            return Outcome(
                Status.FAIL,
                f"{where} garbled its answer to EHLO",
                f"The server greeted ({greeting}); its answer to EHLO is no SMTP reply: "
                f"{error_text(outcome)}.",
                Cause.UNKNOWN,
                f"The server at {settings.host} port {settings.port} does not speak SMTP "
                f"correctly after its greeting; check Host and Port in {settings_path(profile)}.",
            )
        if reply is None:
            # The TCP connection was accepted and the server spoke: no refusal. A server that
            # must end a session says 421 first (RFC 5321 section 3.8); one that closes in
            # silence is not serving for now.
            return Outcome(
                Status.FAIL,
                f"{where} hangs up after its greeting",
                f"The server greeted ({greeting}) and then closed the connection at EHLO "
                f"without a reply: {error_text(outcome)}. Overloaded servers and filters that "
                "drop clients after the greeting behave like this; a server that must end a "
                "session answers 421 first (RFC 5321 section 3.8).",
                Cause.TEMPORARY_FAILURE,
                f"Check the logs of {settings.host} for why it ends the platform's sessions "
                "after the greeting (connection limits, a content or reputation filter); "
                f"smtp.settings_probe shows whether another Port in {settings_path(profile)} "
                "is served.",
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
            Status.ERROR, "The connection could not be tested", error_text(outcome), Cause.UNKNOWN
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


def _answered_in_part(outcome: SessionOutcome) -> bool:
    """Whether the server sent part of a reply to the last command before the session ended."""
    lines = outcome.transcript.lines
    last = max((i for i, line in enumerate(lines) if line.side == "C"), default=-1)
    return last >= 0 and any(line.side == "S" for line in lines[last + 1 :])


def classify_tls(
    outcome: SessionOutcome, profile: PlatformProfile, now: datetime.datetime | None = None
) -> Outcome:
    """STARTTLS / implicit TLS: offered, handshake, certificate."""
    settings = outcome.settings
    label = profile.encryption_label
    path = settings_path(profile)
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
        return not_reached("smtp.tls", outcome)
    if not tls_step.ok:
        if tls_step.timed_out:
            return Outcome(
                Status.FAIL,
                "TLS handshake timed out",
                tls_step.error or "",
                Cause.TLS_MISMATCH,
                f"In {path}, check Encryption: {describe_setting(settings, profile)}; the standard pairs are 587 with {label('starttls')} and 465 with {label('tls')}.",
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
        f"SMTP only: in {settings_path(profile)}, choose the port on which it speaks TLS (465 with "
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
            f"Enter the host name the certificate is issued for as Host in {settings_path(profile)}"
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


@check("smtp.connect", flow="outbound", title="SMTP server answers")
async def connect(context: Context) -> list[Finding]:
    return await session_check(context, "smtp.connect", lambda o, p, _: classify_connect(o, p))


@check("smtp.tls", flow="outbound", title="TLS and certificate")
async def tls(context: Context) -> list[Finding]:
    findings = await session_check(context, "smtp.tls", lambda o, p, _: classify_tls(o, p))
    return findings
