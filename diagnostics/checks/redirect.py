"""The redirection, proven by a round trip: ``redirect.roundtrip``, ``redirect.local_copy``,
``redirect.loop``.

I/O tier: :func:`probe_roundtrip` sends one tagged, DKIM-signed message to the custom
address through the MX that DNS names, as a candidate's server would, and waits (bounded) for
it at the platform, for a copy at the company, and for a bounce at the sender. One round trip
per custom address per run, shared by these checks and the ``headers`` family. Pure tier: the
``classify_*`` functions.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

from diagnostics.checks.redirect_live import (
    classify_live_local_copy,
    classify_live_loop,
    classify_live_roundtrip,
    mailbox_unreadable,
)
from diagnostics.context import Context
from diagnostics.errors import ProbeError
from diagnostics.fields import envelope_address
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.liveroundtrip import probe_live_roundtrip
from diagnostics.model.account import Company, Subcompany
from diagnostics.net.delivery import deliver_to_mx
from diagnostics.parse.headers.family import server_family
from diagnostics.parse.headers.message import as_message
from diagnostics.profiles import PlatformProfile
from diagnostics.registry import check
from diagnostics.roundtrip import RoundTrip, new_token, probe_message
from diagnostics.smtpclient import SMTPRefused
from diagnostics.unplayed import refused, unplayed_outcome

POLL_S = 0.05
MAX_POLL_S = 0.25
_STATUS = re.compile(r"^Status:\s*([245]\.\d{1,3}\.\d{1,3})", re.MULTILINE | re.IGNORECASE)
_DIAGNOSTIC = re.compile(r"^Diagnostic-Code:\s*(.+)$", re.MULTILINE | re.IGNORECASE)


async def probe_roundtrip(context: Context, address: str) -> RoundTrip:
    """Send the tagged message to ``address`` and wait for it; never raises for a failure."""
    trip = RoundTrip(address)
    mailboxes = context.mailboxes
    if mailboxes is None:
        return trip
    trip.token = new_token()
    trip.sent = probe_message(
        trip.token,
        sender=mailboxes.sender,
        recipient=envelope_address(address),
        key=mailboxes.dkim_key,
    )
    trip.sent_at = time.time()
    started = time.perf_counter()
    try:
        trip.delivered_to = await deliver_to_mx(
            context,
            address,
            trip.sent,
            mailboxes.sender,
            helo=f"mail.{mailboxes.sender.rsplit('@', 1)[-1]}",
        )
    except SMTPRefused as exc:
        trip.delivery_error = str(exc.reply)
        return trip
    except (ProbeError, OSError) as exc:
        trip.delivery_error = str(exc)
        trip.delivery_cause = (
            Cause.DNS_FAILURE
            if isinstance(exc, ProbeError) and exc.step == "resolve"
            else Cause.CONNECTION_REFUSED
        )
        return trip
    trip.accepted_at = time.time()
    deadline = started + context.timeouts.roundtrip
    # The latency comes from the arrival's own time stamp, not from when it is seen: the
    # mailboxes are looked into less often as the wait goes on.
    poll = POLL_S
    while time.perf_counter() < deadline:
        trip.arrivals = mailboxes.arrived(trip.token)
        trip.bounces = mailboxes.bounces(trip.token)
        if trip.arrivals or trip.bounces:
            break
        await asyncio.sleep(poll)
        poll = min(poll * 1.5, MAX_POLL_S)
    trip.waited_s = time.perf_counter() - started
    if trip.arrivals:
        # From the MX's acceptance: the company's queue and filters, not the sending session.
        trip.latency_s = (
            max(0.0, trip.arrivals[0].stored_at - trip.accepted_at)
            if trip.arrivals[0].stored_at
            else trip.waited_s
        )
        # A duplicate or a loop shows within moments of the first arrival.
        await asyncio.sleep(min(0.5, context.timeouts.roundtrip_warn / 2))
        trip.arrivals = mailboxes.arrived(trip.token)
    trip.local_copies = mailboxes.local_copies(address, trip.token)
    if not trip.arrivals:
        trip.others = mailboxes.arrived_since(trip.sent_at - 1)
    return trip


def _identity_of(context: Context, address: str) -> Company | Subcompany:
    """The first (sub)company whose custom address is ``address``."""
    return next(
        i
        for i in context.config.identities()
        if i.custom_address is not None and i.custom_address.casefold() == address.casefold()
    )


def mailbox_key(context: Context, address: str) -> str:
    """Where the account file gives the mailbox of ``address`` (``company.mailbox``)."""
    identity = _identity_of(context, address)
    if identity is context.config.company:
        return "company.mailbox"
    return f"subcompanies[{context.config.subcompanies.index(identity)}].mailbox"


def _roundtrip_future(context: Context, address: str) -> asyncio.Future[RoundTrip]:
    key = ("roundtrip", address.casefold())
    if key not in context.memo:
        if context.mailboxes is None and context.roundtrip is not None:
            probe = probe_live_roundtrip(
                context, _identity_of(context, address), address, context.roundtrip
            )
        else:
            probe = probe_roundtrip(context, address)
        context.memo[key] = asyncio.ensure_future(probe)
    future: asyncio.Future[RoundTrip] = context.memo[key]
    return future


async def roundtrip_for(context: Context, address: str) -> RoundTrip:
    """The run's round trip to ``address``: sent once, shared by every check."""
    return await asyncio.shield(_roundtrip_future(context, address))


# -- pure tier --------------------------------------------------------------------------------


def bounce_cause(data: bytes) -> Cause:
    """What a bounce of the round trip says went wrong, by the diagnosis rules."""
    from diagnostics.diagnose import diagnose

    return diagnose(data).cause


def parse_bounce(data: bytes) -> tuple[str | None, str | None]:
    """(enhanced status, diagnostic text) of a delivery status notification."""
    text = data.decode("utf-8", "replace")
    status = _STATUS.search(text)
    diagnostic = _DIAGNOSTIC.search(text)
    return (
        status.group(1) if status else None,
        diagnostic.group(1).strip() if diagnostic else None,
    )


def is_gmail_confirmation(data: bytes) -> bool:
    """Whether ``data`` is Gmail's "(#123) Gmail Forwarding Confirmation" message."""
    message = as_message(data)
    sender = str(message.get("From", "")).lower()
    subject = str(message.get("Subject", ""))
    return "forwarding-noreply@google.com" in sender and "Forwarding Confirmation" in subject


def _path(profile: PlatformProfile) -> str:
    return profile.ui.settings_path


def manual_steps(profile: PlatformProfile, address: str, inbound: str) -> str:
    ui = profile.ui
    return (
        f"In {ui.settings_path}, click '{ui.send_test_mail}': the test mail must appear under "
        f"'{ui.unassigned}' within a few minutes, and a copy must stay in {address}. Or send a "
        f"message to {address} from an outside mailbox and look for it there; `maildiag headers` "
        f"reads the message as it arrived at {inbound}."
    )


def classify_roundtrip(
    trip: RoundTrip, profile: PlatformProfile, inbound: str, warn_s: float
) -> Outcome:
    """Did the tagged message reach the platform's inbound address, and how."""
    address = trip.address
    ui = profile.ui
    fix_target = (
        f"Set the redirection of {address} to exactly {inbound} (the {ui.inbound_address_label} "
        f"shown in {ui.settings_path}), keeping a copy and the original headers."
    )
    if trip.delivery_error is not None:
        return Outcome(
            Status.FAIL,
            f"{address} does not accept mail",
            f"The test message could not be delivered to the MX of {address.rsplit('@', 1)[-1]}: {trip.delivery_error}.",
            trip.delivery_cause or Cause.RECIPIENT_UNKNOWN,
            f"Make sure {address} exists and its domain's MX accepts mail from the internet (see dns.mx); "
            "candidates' applications cannot arrive until then.",
        )
    arrival = trip.arrived
    if arrival is not None:
        where = (
            ui.unassigned
            if arrival.folder == "unassigned"
            else f"a candidate's profile ({arrival.folder})"
        )
        detail = (
            f"The test message sent to {address} arrived at {inbound} {trip.latency_s or 0:.2f} s "
            f"after the company's mail server accepted it, and was filed in {where}."
        )
        if trip.latency_s is not None and trip.latency_s > warn_s:
            return Outcome(
                Status.WARN,
                f"Redirection works but is slow ({trip.latency_s:.1f} s)",
                detail
                + f" That is more than {warn_s:g} s: a queue backlog or a content filter delays candidates' mail.",
                remediation=f"Look at the mail queue and the filters between {address} and the redirection.",
            )
        return Outcome(Status.PASS, f"Test message reached {ui.unassigned}", detail)
    for bounce in trip.bounces:
        status, diagnostic = parse_bounce(bounce.data)
        said = f"The redirection bounced: {status or ''} {diagnostic or ''}".strip()
        cause = bounce_cause(bounce.data)
        if cause is Cause.LOOP_DETECTED:
            return Outcome(
                Status.FAIL,
                "The redirection loops",
                said + ".",
                Cause.LOOP_DETECTED,
                f"The redirection of {address} leads back to itself. {fix_target}",
            )
        if cause is Cause.FORWARDING_BLOCKED:
            return Outcome(
                Status.FAIL,
                "Microsoft 365 blocks the external forwarding",
                said + ".",
                Cause.FORWARDING_BLOCKED,
                "In the Microsoft 365 Defender portal, open Policies > Anti-spam > Anti-spam outbound policy and set "
                "Automatic forwarding rules to On for the recruiting mailbox (or use a mail flow rule that redirects).",
            )
        if cause is Cause.RECIPIENT_UNKNOWN:
            return Outcome(
                Status.FAIL,
                "The redirection targets an address that does not exist",
                said + ".",
                Cause.RECIPIENT_UNKNOWN,
                fix_target,
            )
        if cause is Cause.MAILBOX_FULL:
            return Outcome(
                Status.FAIL,
                "A mailbox on the way is full",
                said + ".",
                Cause.MAILBOX_FULL,
                f"Free space in the mailbox of {address} (or raise its quota): a full mailbox "
                "refuses candidates' mail, and the kept copy with it. If the bounce names "
                f"{inbound}, the platform's side is full: tell the platform's support.",
            )
        # What else the diagnosis rules read in the bounce (a policy, a size limit, a rate
        # limit) is the cause to report; a bounce they cannot read is a blocked forwarding.
        return Outcome(
            Status.FAIL,
            "The redirection bounced",
            said + ".",
            cause if cause is not Cause.UNKNOWN else Cause.FORWARDING_BLOCKED,
            fix_target,
        )
    for other in trip.others:
        if is_gmail_confirmation(other.data):
            return Outcome(
                Status.FAIL,
                "Gmail is waiting for the forwarding to be confirmed",
                f"Instead of the test message, Gmail's forwarding confirmation arrived at {inbound}: Gmail "
                "forwards nothing until someone clicks the link in it.",
                Cause.FORWARDING_BLOCKED,
                f"Open the confirmation message in the platform's {ui.unassigned} and click its link (or "
                f"enter its code in Gmail > Settings > Forwarding and POP/IMAP); better, set up the "
                "redirection as a Google Workspace routing rule, which needs no confirmation.",
            )
    if trip.local_copies:
        exchange = server_family(trip.local_copies[0].data) == "exchange"
        extra = (
            " Microsoft 365 runs one redirection per message: a message that an inbox rule already "
            "redirected is not redirected by a second rule, silently. Use a mail flow rule or the "
            "mailbox's forwarding (ForwardingSmtpAddress) instead of inbox rules."
            if exchange
            else ""
        )
        return Outcome(
            Status.FAIL,
            f"No redirection: the test message stayed in {address}",
            f"After {trip.waited_s:.1f} s the test message is in the company mailbox {address} but not at {inbound}, "
            "and no bounce came back: nothing passes it on.",
            Cause.FORWARDING_BLOCKED,
            f"Set up a redirection of {address} to {inbound} on the company mail server. {fix_target}{extra}",
        )
    return Outcome(
        Status.FAIL,
        f"Test message lost after {trip.waited_s:.0f} s",
        f"The MX {trip.delivered_to} accepted the test message for {address}, but it reached neither {inbound} nor "
        "the company mailbox, and no bounce came back.",
        Cause.CONNECTION_TIMEOUT,
        f"Look for the test message (token {trip.token}) in the mail server's log and quarantine. {fix_target}",
    )


def classify_local_copy(trip: RoundTrip, profile: PlatformProfile) -> Outcome:
    if not trip.token or trip.delivery_error is not None:
        return Outcome(
            Status.SKIP,
            "Not reached",
            "The test message was not delivered; see redirect.roundtrip.",
        )
    if trip.local_copies:
        return Outcome(
            Status.PASS,
            f"A copy stays in {trip.address}",
            f"{len(trip.local_copies)} copy kept on the company server.",
        )
    return Outcome(
        Status.WARN,
        f"No copy stays in {trip.address}",
        "The redirection keeps no copy on the company server: if the platform account ends or the redirection "
        "fails, candidates' mail is only on the platform.",
        remediation=f"Keep a copy when redirecting (Exchange/Microsoft 365: DeliverToMailboxAndForward $true; "
        f"Google Workspace: 'Also deliver to' keeps the original recipient; Postfix: list {trip.address} itself in "
        "the virtual alias next to the platform address).",
    )


def classify_loop(trip: RoundTrip, profile: PlatformProfile) -> Outcome:
    if not trip.token or trip.delivery_error is not None:
        return Outcome(
            Status.SKIP,
            "Not reached",
            "The test message was not delivered; see redirect.roundtrip.",
        )
    for bounce in trip.bounces:
        _, diagnostic = parse_bounce(bounce.data)
        if bounce_cause(bounce.data) is Cause.LOOP_DETECTED:
            return Outcome(
                Status.FAIL,
                "Mail loop",
                f"The message circled until a server refused it: {diagnostic}.",
                Cause.LOOP_DETECTED,
                f"Remove the rule that sends mail for {trip.address} back to itself "
                "(a redirection to an address that redirects back).",
            )
    if len(trip.arrivals) > 1:
        return Outcome(
            Status.FAIL,
            f"Duplicates: the test message arrived {len(trip.arrivals)} times",
            f"Folders: {', '.join(a.folder for a in trip.arrivals)}.",
            Cause.LOOP_DETECTED,
            f"{trip.address} is redirected more than once (two rules, or a rule and a forwarding); keep one.",
        )
    arrival = trip.arrived
    if arrival is None:
        return Outcome(
            Status.PASS, "No loop seen", "The test message did not arrive; nothing circled back."
        )
    message = as_message(arrival.data)
    hops = len(message.get_all("Received", []))
    delivered = [str(v).lower() for v in message.get_all("Delivered-To", [])]
    if len(delivered) != len(set(delivered)) or hops > 25:
        return Outcome(
            Status.WARN,
            f"Signs of a loop ({_hops(hops)})",
            f"Delivered-To: {', '.join(delivered)}.",
            remediation="Check the redirection rules for an address that leads back to the recruiting mailbox.",
        )
    return Outcome(
        Status.PASS,
        f"No loop, no duplicate ({hops} hops)",
        f"The test message arrived once after {hops} hops.",
    )


def _hops(count: int) -> str:
    return f"{count} hop" if count == 1 else f"{count} hops"


# -- registered checks ------------------------------------------------------------------------


def _addresses(context: Context) -> list[tuple[str, str | None, str | None]]:
    """(subject, custom address, the subject that already covers this address)."""
    seen: dict[str, str] = {}
    result: list[tuple[str, str | None, str | None]] = []
    for identity in context.config.identities():
        address = identity.custom_address
        if address is None:
            result.append((identity.name, None, None))
            continue
        first = seen.setdefault(address.casefold(), identity.name)
        result.append((identity.name, address, first if first != identity.name else None))
    return result


async def per_roundtrip(
    context: Context,
    check_id: str,
    judge: Callable[[RoundTrip], Awaitable[Outcome]],
    *,
    live: Callable[[str], Outcome],
) -> list[Finding]:
    """One finding per (sub)company from its custom address's round trip, judged by ``judge``.

    Skips a subject without a custom address, or one whose address another subject covers;
    in live mode (no mailboxes to read) the finding is ``live(address)``.
    """
    findings = []
    watched = context.mailboxes is not None or context.roundtrip is not None
    if watched:
        # Every address's round trip at once: none waits for another's.
        for _, address, covered_by in _addresses(context):
            if address is not None and covered_by is None:
                _roundtrip_future(context, address)
    for subject, address, covered_by in _addresses(context):
        if address is None:
            outcome = Outcome(
                Status.SKIP,
                "No custom address",
                "This (sub)company has no custom address of its own; candidates write to the parent's.",
            )
        elif covered_by is not None:
            outcome = Outcome(
                Status.SKIP,
                f"Same address as {covered_by}",
                f"{address} is also {covered_by}'s custom address: its finding covers this one.",
            )
        elif not watched:
            outcome = live(address)
        else:
            trip = await roundtrip_for(context, address)
            findings.append((await judge(trip)).finding(check_id, subject, trip.evidence()))
            continue
        findings.append(outcome.finding(check_id, subject))
    return findings


async def _per_address(
    context: Context, check_id: str, classify: Callable[[RoundTrip], Outcome]
) -> list[Finding]:
    profile = context.config.profile
    inbound = context.config.inbound_address

    async def judge(trip: RoundTrip) -> Outcome:
        return classify(trip)

    def live(address: str) -> Outcome:
        return Outcome(
            Status.SKIP,
            "Round trip not asked for",
            "A live round trip sends one test message to the custom address and watches the "
            "company mailbox over IMAP: run `maildiag audit CONFIG --roundtrip` (the mailbox "
            "is the custom address's own unless the account file gives mailbox:).",
            remediation=manual_steps(profile, address, inbound),
        )

    return await per_roundtrip(context, check_id, judge, live=live)


@check("redirect.roundtrip", flow="inbound", title="Test message reaches the platform")
async def roundtrip(context: Context) -> list[Finding]:
    profile, inbound = context.config.profile, context.config.inbound_address
    warn_s = context.timeouts.roundtrip_warn

    def classify(trip: RoundTrip) -> Outcome:
        if trip.live is not None:
            if trip.live.mailbox_error is not None:
                return mailbox_unreadable(trip, mailbox_key(context, trip.address))
            live = classify_live_roundtrip(trip, profile, inbound)
            if live is not None:
                return live
        outcome = classify_roundtrip(trip, profile, inbound, warn_s)
        if (
            context.mode == "sandbox"
            and trip.delivery_cause is Cause.DNS_FAILURE
            and refused(trip.delivery_error or "")
        ):
            return unplayed_outcome(outcome, [trip.address.rsplit("@", 1)[-1]])
        return outcome

    return await _per_address(context, "redirect.roundtrip", classify)


@check("redirect.local_copy", flow="inbound", title="A copy stays on the company server")
async def local_copy(context: Context) -> list[Finding]:
    profile = context.config.profile

    def classify(trip: RoundTrip) -> Outcome:
        if trip.live is not None:
            if trip.live.mailbox_error is not None:
                return mailbox_unreadable(trip, mailbox_key(context, trip.address))
            return classify_live_local_copy(trip) or classify_local_copy(trip, profile)
        return classify_local_copy(trip, profile)

    return await _per_address(context, "redirect.local_copy", classify)


@check("redirect.loop", flow="inbound", title="No mail loop and no duplicates")
async def loop(context: Context) -> list[Finding]:
    profile = context.config.profile

    def classify(trip: RoundTrip) -> Outcome:
        if trip.live is not None:
            if trip.live.mailbox_error is not None:
                return Outcome(
                    Status.SKIP,
                    "Mailbox not read",
                    "See redirect.roundtrip: the mailbox could not be read.",
                )
            return classify_live_loop(trip) or classify_loop(trip, profile)
        return classify_loop(trip, profile)

    return await _per_address(context, "redirect.loop", classify)
