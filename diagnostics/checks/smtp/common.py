"""What the smtp checks share: the wording that points at the platform's settings page, the
findings for a session that stopped early or a (sub)company without SMTP settings, and
:func:`session_check`, which runs one classifier over every (sub)company's session."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from diagnostics.context import Context
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net.session import SessionOutcome, session_for, start_sessions
from diagnostics.providers import Provider, recognise
from diagnostics.unplayed import refused, unplayed_outcome

if TYPE_CHECKING:
    # Types only: `maildiag smtp` runs these checks without loading pydantic's models.
    from diagnostics.config import SmtpSettings
    from diagnostics.profiles import PlatformProfile


def settings_path(profile: PlatformProfile) -> str:
    ui = profile.ui
    return f"{ui.settings_path} > {ui.use_custom_address} Yes > {ui.use_for_sending} Yes"


def describe_setting(settings: SmtpSettings, profile: PlatformProfile) -> str:
    return f"{settings.host} port {settings.port} with Encryption {profile.encryption_label(settings.encryption)}"


def not_reached(check_id: str, outcome: SessionOutcome) -> Outcome:
    return Outcome(
        Status.SKIP,
        "Not reached",
        f"The session stopped at step '{outcome.failed}' before {check_id} could be tested; "
        "see the failing check above.",
    )


def error_text(outcome: SessionOutcome) -> str:
    step = outcome.step(outcome.failed or "")
    if step is None:
        return ""
    return step.error or step.reply or ""


def no_smtp(check_id: str, subject: str) -> Finding:
    return Finding(
        check=check_id,
        status=Status.SKIP,
        subject=subject,
        title="No SMTP settings of its own",
        detail="This (sub)company has no SMTP settings; sender.resolution shows which route its mail takes.",
    )


def _provider_of(settings: SmtpSettings, outcome: SessionOutcome) -> Provider | None:
    banner = str(outcome.greeting) if outcome.greeting else None
    return recognise(smtp_host=settings.host, banner=banner).provider


async def session_check(
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
            findings.append(no_smtp(check_id, subject))
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
