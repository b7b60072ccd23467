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
import email
import email.policy
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from diagnostics.context import Context
from diagnostics.errors import DialError, ProbeError, SandboxError
from diagnostics.fields import envelope_address
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net import dial, mx_exchanges, query_dns
from diagnostics.parse.headers.family import server_family
from diagnostics.profiles import PlatformProfile
from diagnostics.registry import check
from diagnostics.roundtrip import Arrival, new_token, probe_message
from diagnostics.smtpclient import SMTPConnection, SMTPRefused, accepted
from diagnostics.unplayed import refused, unplayed_outcome

POLL_S = 0.05
_STATUS = re.compile(r"^Status:\s*([245]\.\d{1,3}\.\d{1,3})", re.MULTILINE | re.IGNORECASE)
_DIAGNOSTIC = re.compile(r"^Diagnostic-Code:\s*(.+)$", re.MULTILINE | re.IGNORECASE)


@dataclass
class RoundTrip:
    """What one round trip saw."""

    address: str
    token: str = ""
    sent: bytes = b""
    sent_at: float = 0.0
    delivered_to: str | None = None
    delivery_error: str | None = None
    delivery_cause: Cause | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    # What else reached the platform meanwhile (a provider's forwarding confirmation, say).
    others: list[Arrival] = field(default_factory=list)
    local_copies: list[Arrival] = field(default_factory=list)
    bounces: list[Arrival] = field(default_factory=list)
    waited_s: float = 0.0
    latency_s: float | None = None

    @property
    def arrived(self) -> Arrival | None:
        return self.arrivals[0] if self.arrivals else None

    def evidence(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "token": self.token,
            "delivered_to": self.delivered_to,
            "delivery_error": self.delivery_error,
            "arrivals": [a.folder for a in self.arrivals],
            "local_copies": len(self.local_copies),
            "bounces": len(self.bounces),
            "waited_s": round(self.waited_s, 3),
            "latency_s": round(self.latency_s, 3) if self.latency_s is not None else None,
        }


async def _deliver(context: Context, address: str, data: bytes, sender: str) -> str:
    """Hand ``data`` to the first MX of ``address``'s domain that takes it; its name."""
    domain = address.rsplit("@", 1)[-1]
    timeouts = context.timeouts
    lifetime = timeouts.dns
    for attempt in range(3):
        # Asked as in live mode: a REFUSED in the error tells a name the sandbox does not play.
        answer = await query_dns(context.resolver, domain, "MX", lifetime=lifetime)
        # A server that failed or did not answer in time: try again, as a sending MTA does.
        if not answer.failed or attempt == 2:
            break
    exchanges = mx_exchanges(answer)
    if not exchanges:
        raise DialError(
            "resolve", domain, 25, answer.detail, message=f"no MX for {domain}: {answer.detail}"
        )
    last: Exception | None = None
    for exchange in exchanges:
        # Straight from the MX's address records: a sending MTA knows no hosts file.
        addresses = await query_dns(context.resolver, exchange, "A", lifetime=lifetime)
        if addresses.kind != "answer":
            last = DialError("resolve", exchange, 25, addresses.detail)
            continue
        for record in addresses.records:
            try:
                sock = await dial(context, record, 25)
            except (ProbeError, SandboxError) as exc:
                last = exc
                continue
            connection = await SMTPConnection.start(
                sock, server_name=exchange, timeout=timeouts.connect
            )
            try:
                accepted("banner", await connection.read_reply("banner", timeouts.banner))
                helo = f"mail.{sender.rsplit('@', 1)[-1]}"
                accepted("ehlo", await connection.command("ehlo", f"EHLO {helo}", timeouts.command))
                await connection.send_message(
                    sender,
                    [address],
                    data,
                    timeout=timeouts.command,
                    data_timeout=timeouts.data,
                )
            finally:
                await connection.close()
            return str(exchange)
    raise ProbeError("deliver", f"no MX of {domain} took the message: {last}")


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
        trip.delivered_to = await _deliver(context, address, trip.sent, mailboxes.sender)
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
    deadline = started + context.timeouts.roundtrip
    while time.perf_counter() < deadline:
        trip.arrivals = mailboxes.arrived(trip.token)
        trip.bounces = mailboxes.bounces(trip.token)
        if trip.arrivals or trip.bounces:
            break
        await asyncio.sleep(POLL_S)
    trip.waited_s = time.perf_counter() - started
    if trip.arrivals:
        trip.latency_s = (
            max(0.0, trip.arrivals[0].stored_at - trip.sent_at)
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


def _roundtrip_future(context: Context, address: str) -> asyncio.Future[RoundTrip]:
    key = ("roundtrip", address.casefold())
    if key not in context.memo:
        context.memo[key] = asyncio.ensure_future(probe_roundtrip(context, address))
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
    message = email.message_from_bytes(data, policy=email.policy.default)
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
            f"The test message sent to {address} arrived at {inbound} after {trip.latency_s or 0:.2f} s "
            f"and was filed in {where}."
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
        return Outcome(
            Status.FAIL, "The redirection bounced", said + ".", Cause.FORWARDING_BLOCKED, fix_target
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
    message = email.message_from_bytes(arrival.data, policy=email.policy.default)
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
    if context.mailboxes is not None:
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
        elif context.mailboxes is None:
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
            "Round trip needs a mailbox the tool can read",
            "In live mode maildiag cannot see the platform's inbound mailbox.",
            remediation=manual_steps(profile, address, inbound),
        )

    return await per_roundtrip(context, check_id, judge, live=live)


@check("redirect.roundtrip", flow="inbound", title="Test message reaches the platform")
async def roundtrip(context: Context) -> list[Finding]:
    profile, inbound = context.config.profile, context.config.inbound_address
    warn_s = context.timeouts.roundtrip_warn

    def classify(trip: RoundTrip) -> Outcome:
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
    return await _per_address(
        context, "redirect.local_copy", lambda trip: classify_local_copy(trip, profile)
    )


@check("redirect.loop", flow="inbound", title="No mail loop and no duplicates")
async def loop(context: Context) -> list[Finding]:
    profile = context.config.profile
    return await _per_address(context, "redirect.loop", lambda trip: classify_loop(trip, profile))
