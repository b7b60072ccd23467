"""``smtp.settings_probe``: when the configured host/port/encryption fails in a way another
combination may fix, which one works.

The registration tries the usual submission combinations (:data:`ALTERNATIVES`) through
:func:`~diagnostics.net.session.probe_alternative`, without logging in;
:func:`classify_settings_probe` names the smallest change that works.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING

from diagnostics.checks.smtp.common import describe_setting, no_smtp, settings_path
from diagnostics.context import Context
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net.session import (
    Alternative,
    SessionOutcome,
    probe_alternative,
    session_for,
    start_sessions,
)
from diagnostics.registry import check

if TYPE_CHECKING:
    from diagnostics.profiles import PlatformProfile

ALTERNATIVES: tuple[tuple[int, str], ...] = ((465, "tls"), (587, "starttls"), (25, "starttls"))


def classify_settings_probe(
    outcome: SessionOutcome, alternatives: list[Alternative], profile: PlatformProfile
) -> Outcome:
    """Which combination works when the configured one does not."""
    settings = outcome.settings
    label = profile.encryption_label
    if outcome.tls_verify_error:
        return Outcome(
            Status.PASS,
            f"Configured {describe_setting(settings, profile)} is right; the certificate is not",
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
            f"Configured {describe_setting(settings, profile)} works",
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
            f"Configured {describe_setting(settings, profile)} fails at step '{outcome.failed}'. Tried: {tried}.",
            Cause.TLS_MISMATCH,
            f"In {settings_path(profile)}, set Port {best.port} and Encryption {label(best.encryption)} ({best.summary}).",
        )
    configured = classify_attempt(str(outcome.error)) if outcome.error is not None else None
    cause = cause_of_alternatives(alternatives, configured)
    if cause is Cause.TEMPORARY_FAILURE:
        remediation = (
            f"No change of Port or Encryption in {settings_path(profile)} helps: "
            f"{settings.host} greets and then ends the session without a reply (see Tried). "
            "Check its logs for why it drops the platform's sessions (connection limits, a "
            "content or reputation filter)."
        )
    else:
        remediation = (
            f"{settings.host} offers no submission service the platform can use; check Host "
            f"in {settings_path(profile)} and the server's firewall."
        )
    return Outcome(
        Status.FAIL,
        f"No combination works on {settings.host}",
        f"Tried: {tried}.",
        cause,
        remediation,
    )


def classify_attempt(summary: str) -> Cause:
    """What one failed attempt points to, from its summary: the step and the client's words
    (``connect: ... Connection refused``, ``ehlo: the server closed the connection``), or
    what :func:`~diagnostics.net.session.probe_alternative` says instead of a step."""
    step, _, words = summary.partition(": ")
    lowered = summary.lower()
    if "timed out" in lowered or "no route" in lowered:
        return Cause.CONNECTION_TIMEOUT
    if step == "resolve":
        return Cause.DNS_FAILURE
    if step == "connect":
        return Cause.CONNECTION_REFUSED
    if step == "greeting":
        code = words[:1]
        return {"4": Cause.TEMPORARY_FAILURE, "5": Cause.CLIENT_IP_REJECTED}.get(
            code, Cause.UNKNOWN
        )
    if step == "tls":
        return Cause.TLS_CERTIFICATE if "verif" in lowered else Cause.TLS_MISMATCH
    if "closed the connection" in words or "connection was lost" in words:
        # Closed before the greeting: as a deny rule's reset refuses. After it, the server
        # ended a session it had begun, without the 421 RFC 5321 section 3.8 asks for.
        return Cause.CONNECTION_REFUSED if step == "banner" else Cause.TEMPORARY_FAILURE
    if "STARTTLS" in summary or "TLS" in words:
        return Cause.TLS_MISMATCH
    if summary == "no AUTH offered":
        return Cause.AUTH_DISABLED
    return Cause.UNKNOWN


def cause_of_alternatives(alternatives: list[Alternative], configured: Cause | None) -> Cause:
    """The cause most of the alternatives point to (all refused: connection_refused; all timed
    out: connection_timeout); a tie goes to the configured combination's own, if among them."""
    counts = Counter(classify_attempt(a.summary) for a in alternatives)
    if not counts:
        return configured or Cause.UNKNOWN
    most = max(counts.values())
    tied = [cause for cause, n in counts.items() if n == most]
    if configured is not None and configured in tied:
        return configured
    return tied[0]


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
            findings.append(no_smtp("smtp.settings_probe", subject))
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
