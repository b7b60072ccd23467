"""``smtp.auth``, ``smtp.sender`` and ``smtp.provider``: the one login, sending as the custom
address (MAIL FROM, RCPT TO and, with a test message, DATA), and the provider behind the SMTP
host and MX with its known constraints.

:func:`classify_auth`, :func:`classify_sender` and :func:`classify_provider` turn the run's
:class:`~diagnostics.net.session.SessionOutcome` into an outcome; a provider's known reply
(:mod:`diagnostics.providers`) names its own fix. The registrations run them over every
(sub)company.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from diagnostics.checks.smtp.common import (
    error_text,
    no_smtp,
    not_reached,
    session_check,
    settings_path,
)
from diagnostics.context import Context
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net import DNSQueries
from diagnostics.net.session import SessionOutcome, session_for, start_sessions
from diagnostics.providers import Provider, recognise
from diagnostics.registry import check

if TYPE_CHECKING:
    # Types only: `maildiag smtp` runs these checks without loading pydantic's models.
    from diagnostics.config import SmtpSettings
    from diagnostics.profiles import PlatformProfile


def _provider_rule(outcome: SessionOutcome, provider: Provider | None, step: str) -> Outcome | None:
    reply = outcome.replies.get(step)
    if provider is None or reply is None:
        return None
    same = outcome.settings.account.strip().lower() == (outcome.sender or "").strip().lower()
    rule = provider.rule_for(step, reply.enhanced, reply.text, same_login=same)
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


_SENDER_WORDS = re.compile(
    r"sender|send(?:ing)? as|send on behalf|not owned|owner|from address|mail from|envelope|spoof"
    r"|not (?:allowed|authori[sz]ed|permitted) to (?:send|use)|address rejected|impersonat",
    re.IGNORECASE,
)
_LIMIT_WORDS = re.compile(
    r"sending limit|sending quota|daily (?:user )?(?:sending )?(?:limit|quota)|too many messages"
    r"|message rate|rate limit|quota exceeded",
    re.IGNORECASE,
)


def _sending_limit(enhanced: str | None, text: str) -> bool:
    """A reply that says the account's sending quota is used up (5.4.5, or its words)."""
    return enhanced == "5.4.5" or bool(_LIMIT_WORDS.search(text))


def _refuses_sender(enhanced: str | None, text: str) -> bool:
    """A refusal at MAIL FROM is about owning the sender address only when its code or words
    say so: a 5.7.x (or 5.1.x address) code with sender wording, or no enhanced code and such
    words."""
    worded = bool(_SENDER_WORDS.search(text))
    if enhanced is None:
        return worded
    return enhanced.startswith(("5.7.", "5.1.")) and worded


def classify_auth(
    outcome: SessionOutcome, profile: PlatformProfile, provider: Provider | None = None
) -> Outcome:
    """One AUTH attempt: mechanism, result, never in clear text when encryption was asked for."""
    settings = outcome.settings
    path = settings_path(profile)
    step = outcome.step("auth")
    if step is None:
        return not_reached("smtp.auth", outcome)
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
    if reply.enhanced == "5.7.14" or "web browser" in reply.text.lower():
        return Outcome(
            Status.FAIL,
            "The provider blocked the sign-in as suspicious",
            str(reply),
            Cause.AUTH_FAILED,
            f"Sign in to {settings.account} in a web browser and clear the security prompt, then run the check "
            "again; if the provider keeps refusing, use an app password.",
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
    path = settings_path(profile)
    mail = outcome.step("mail")
    if mail is None:
        return not_reached("smtp.sender", outcome)
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
                error_text(outcome),
                Cause.CONNECTION_TIMEOUT,
            )
        if _sending_limit(reply.enhanced, reply.text):
            return Outcome(
                Status.FAIL,
                f"{settings.account} has reached its sending limit",
                str(reply),
                Cause.RATE_LIMITED,
                f"The server refuses mail from {settings.account} until its sending quota recovers; the platform's mail "
                "bounces until then. Find what sent so much, wait for the quota to reset and check the provider's limits.",
            )
        if reply.code >= 500 and not _refuses_sender(reply.enhanced, reply.text):
            return Outcome(
                Status.FAIL,
                f"MAIL FROM {sender} refused",
                str(reply),
                Cause.POLICY_REJECTED,
                f"The server refused the message at MAIL FROM for a reason other than the sender address ({reply}); "
                "the reply names it.",
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
            str(outcome.replies.get("rcpt") or error_text(outcome)),
            Cause.TEMPORARY_FAILURE,
            "Try again later.",
        )
    if failed in ("data", "data_end"):
        reply = outcome.replies.get("data")
        return Outcome(
            Status.FAIL,
            "The test message was refused",
            str(reply or error_text(outcome)),
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


async def _mx_hosts(context: Context, address: str | None) -> list[str]:
    if not address:
        return []
    # Through the run's queries: once its resolver is known broken, not asked again.
    answer = await DNSQueries.of(context)(address.rsplit("@", 1)[-1], "MX")
    # "10 mx.example.": the exchange, as the provider is recognised by its name.
    return [r.split()[-1].rstrip(".").lower() for r in answer.records]


@check("smtp.auth", flow="outbound", title="SMTP login")
async def auth(context: Context) -> list[Finding]:
    return await session_check(context, "smtp.auth", classify_auth)


@check("smtp.sender", flow="outbound", title="Sending as the custom address")
async def sender(context: Context) -> list[Finding]:
    return await session_check(context, "smtp.sender", classify_sender)


@check("smtp.provider", flow="outbound", title="Mail provider constraints")
async def provider(context: Context) -> list[Finding]:
    start_sessions(context)
    findings = []
    for identity in context.config.identities():
        subject, settings, address = identity.name, identity.smtp, identity.custom_address
        if settings is None:
            findings.append(no_smtp("smtp.provider", subject))
            continue
        outcome = await session_for(context, settings, address or settings.account)
        mx = await _mx_hosts(context, address)
        result = classify_provider(outcome, settings, mx)
        findings.append(
            result.finding("smtp.provider", subject, {"smtp_host": settings.host, "mx": mx})
        )
    return findings
