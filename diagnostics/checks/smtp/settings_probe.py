"""``smtp.settings_probe``: when the configured host/port/encryption fails in a way another
combination may fix, which one works.

The registration tries the usual submission combinations (:data:`ALTERNATIVES`) through
:func:`~diagnostics.net.session.probe_alternative`, without logging in;
:func:`classify_settings_probe` names the smallest change that works.
"""

from __future__ import annotations

import asyncio
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
    return Outcome(
        Status.FAIL,
        f"No combination works on {settings.host}",
        f"Tried: {tried}.",
        Cause.CONNECTION_TIMEOUT
        if all("timed out" in a.summary or "no route" in a.summary for a in alternatives)
        else Cause.CONNECTION_REFUSED,
        f"{settings.host} offers no submission service the platform can use; check Host in {settings_path(profile)} and the server's firewall.",
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
