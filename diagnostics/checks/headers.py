"""What the redirection did to the message: ``headers.retention``,
``headers.forwarding_style`` and ``headers.dkim``.

They read the round trip of :mod:`diagnostics.checks.redirect` (one per custom address per
run): the message as sent and as it arrived at the platform. The comparison and the style
classification are pure (:mod:`diagnostics.parse.headers`); DKIM verification asks the context's
resolver for the signer's key (:mod:`diagnostics.parse.dkim`).
"""

from __future__ import annotations

import email.message
import email.policy
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from diagnostics.checks.redirect import per_roundtrip
from diagnostics.context import Context
from diagnostics.fields import envelope_address
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.parse.dkim import SignatureCheck, verify
from diagnostics.parse.headers.family import server_family
from diagnostics.parse.headers.forwarding import (
    classify_forwarding,
    remediation_for,
    subject_tag,
    unexplained_changes,
)
from diagnostics.parse.headers.message import as_message
from diagnostics.parse.headers.retention import compare_retention
from diagnostics.registry import check
from diagnostics.roundtrip import RoundTrip

ATTRIBUTION_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To")


def _not_arrived(trip: RoundTrip) -> Outcome:
    return Outcome(
        Status.SKIP,
        "The test message did not arrive",
        "Nothing to compare: the round trip's message did not reach the platform (see redirect.roundtrip).",
    )


def attribution(arrived: bytes, address: str) -> str | None:
    """The header in which ``address`` survived (To, Cc, Delivered-To, X-Original-To)."""
    message = as_message(arrived)
    # An internationalised domain is written by its A-label or in Unicode (RFC 6532): either.
    forms = {address.casefold(), envelope_address(address).casefold()}
    for name in ATTRIBUTION_HEADERS:
        for value in message.get_all(name, []):
            if any(form in str(value).casefold() for form in forms):
                return name
    return None


def classify_retention(trip: RoundTrip, inbound: str) -> Outcome:
    arrival = trip.arrived
    if arrival is None:
        return _not_arrived(trip)
    retention = compare_retention(trip.sent, arrival.data)
    verdict = classify_forwarding(arrival.data, original=trip.sent)
    family = server_family(arrival.data)
    fault = verdict.faults[0] if verdict.faults else "redirect"
    remediation = remediation_for(
        fault, family, custom_address=trip.address, inbound_address=inbound
    )
    outcome = retention.outcome(remediation)
    if outcome.status == Status.PASS and attribution(arrival.data, trip.address) is None:
        return Outcome(
            Status.FAIL,
            f"{trip.address} is gone from the arrived message",
            f"None of {', '.join(ATTRIBUTION_HEADERS)} names {trip.address}: the platform cannot tell which "
            "account the mail was for.",
            Cause.UNKNOWN,
            remediation,
        )
    return outcome


def classify_style(trip: RoundTrip, inbound: str) -> Outcome:
    arrival = trip.arrived
    if arrival is None:
        return _not_arrived(trip)
    verdict = classify_forwarding(arrival.data, original=trip.sent)
    family = server_family(arrival.data)
    return verdict.outcome(family, custom_address=trip.address, inbound_address=inbound)


def classify_dkim(
    checks: list[SignatureCheck], signer: str, attached: list[SignatureCheck]
) -> Outcome:
    """Whether the original signature (by ``signer``) still verifies on arrival."""
    original = [c for c in checks if c.domain.casefold() == signer.casefold()]
    if not original:
        inside = (
            " The forwarded original, attached inside, still verifies."
            if any(c.verified for c in attached)
            else ""
        )
        return Outcome(
            Status.FAIL,
            f"The original DKIM signature of {signer} is gone",
            "The message that arrived is a new one written by the company server (a forward), not the "
            f"candidate's: it carries no signature of {signer}." + inside,
            Cause.POLICY_REJECTED,
            "Redirect instead of forwarding, so that the candidate's message arrives as it was sent; "
            "see headers.forwarding_style for the setting.",
        )
    failed = [c for c in original if not c.verified]
    if not failed:
        return Outcome(
            Status.PASS,
            f"The DKIM signature of {signer} still verifies",
            "The candidate's signature survived the redirection, so their domain's DMARC policy can still pass.",
        )
    reason = failed[0].reason
    likely = (
        "a footer or disclaimer added to the body"
        if "body" in reason
        else "a signed header rewritten on the way (subject tag, From rewrite, re-encoding)"
    )
    return Outcome(
        Status.FAIL,
        f"The DKIM signature of {signer} broke: {reason}",
        f"Likely cause: {likely}. Candidates whose domain publishes DMARC p=reject or p=quarantine will "
        "have their mail refused or junked after the redirection.",
        Cause.POLICY_REJECTED,
        "Exempt the recruiting address from disclaimer and subject-tagging rules, and redirect without "
        "changing the message (see headers.forwarding_style).",
    )


# Which forwarding faults can break a DKIM signature in the way it broke.
_FORWARDS = {"forward_inline", "forward_attachment"}
_BREAKS_DKIM = {
    "gone": _FORWARDS,
    "body": {"footer_appended", *_FORWARDS},
    "header": {"subject_tagged", "from_rewritten", "headers_stripped", *_FORWARDS},
}


def redirection_root_cause(
    trip: RoundTrip, check_id: str, inbound: str, *, dkim_broke: str | None = None
) -> dict[str, Any] | None:
    """What the server that passed the message on changed in it, when that explains the
    finding of ``check_id`` (None otherwise): the same for every check and every custom
    address that server treats alike, so that the reports show them as one fix.

    ``faults`` are the forwarding styles found (subject tag, footer, From rewrite, stripped
    headers, forward). A retention finding with differences none of them accounts for, or a
    DKIM signature broken in a way (``dkim_broke``: ``gone``, ``body`` or ``header``) none of
    them causes, is a problem of its own and gets none.
    """
    arrival = trip.arrived
    if arrival is None:
        return None
    verdict = classify_forwarding(arrival.data, original=trip.sent)
    if not verdict.faults:
        return None
    retention = compare_retention(trip.sent, arrival.data)
    if check_id == "headers.retention" and unexplained_changes(retention, verdict.faults):
        return None
    if check_id == "headers.dkim" and not _BREAKS_DKIM.get(dkim_broke or "", set()) & set(
        verdict.faults
    ):
        return None
    cause: dict[str, Any] = {
        "kind": "redirection_changes_message",
        "server": trip.delivered_to,
        "server_family": server_family(arrival.data),
        "faults": list(verdict.faults),
        "inbound_address": inbound,
    }
    tagged = subject_tag(retention.diff("Subject"))
    if tagged is not None and "subject_tagged" in verdict.faults:
        cause["subject_tag"], cause["tag_position"] = tagged
    return cause


def dkim_breakage(checks: list[SignatureCheck], signer: str) -> str | None:
    """How the original signature (by ``signer``) broke: ``gone``, ``body`` (the body hash),
    ``header`` (a signed header), or None when it verifies or its key could not be read."""
    original = [c for c in checks if c.domain.casefold() == signer.casefold()]
    if not original:
        return "gone"
    failed = [c for c in original if not c.verified]
    if not failed or "no usable key" in failed[0].reason:
        return None
    return "body" if "body" in failed[0].reason else "header"


Judged = tuple[Outcome, dict[str, Any] | None]


def _attached(data: bytes) -> bytes | None:
    # The parse the header analysis shares (read only: writing out a parsed part changes it
    # only for a multipart without a boundary, which a parser never makes).
    message = as_message(data)
    for part in message.walk():
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, email.message.Message):
                return inner.as_bytes(policy=email.policy.SMTP)
    return None


def _live(address: str) -> Outcome:
    return Outcome(
        Status.SKIP,
        "Needs the message as it arrived",
        "In live mode the tool cannot read the arrived message: save it as .eml from the platform "
        "and run `maildiag headers RECEIVED.eml --original SENT.eml`.",
    )


def classify_kept_dkim(trip: RoundTrip, checks: list[SignatureCheck]) -> Outcome:
    """headers.dkim in a live round trip: whether the test message's own signature (made with
    the account file's ``dkim:`` key) still verifies on the copy the company server kept."""
    watch = trip.live
    assert watch is not None
    if not watch.signed_by:
        return Outcome(
            Status.SKIP,
            "The test message was not signed",
            "The account file gives no dkim: key, so the round trip's message went unsigned.",
            remediation="Give dkim: {selector: S, key_file: PEM} (the key your mail server signs "
            "with) to sign it as candidates' providers sign theirs, and see whether a signature "
            "survives your server.",
        )
    if not trip.local_copies or watch.mailbox_error:
        return Outcome(Status.SKIP, "No kept copy to check", "See redirect.local_copy.")
    domain = watch.signed_by.split("._domainkey.", 1)[-1]
    own = [c for c in checks if c.domain.casefold() == domain.casefold()]
    if own and own[0].verified:
        return Outcome(
            Status.PASS,
            "The test message's DKIM signature still verifies on the kept copy",
            f"Signed with {watch.signed_by}; the company server kept the message unchanged. "
            "Whether the redirection keeps it intact shows on the platform's copy: save it as "
            ".eml and run `maildiag headers ARRIVED.eml --original-from CONFIG`.",
        )
    reason = own[0].reason if own else "the signature is gone"
    if "no usable key" in reason:
        return Outcome(
            Status.WARN,
            f"The signature could not be checked: no key at {watch.signed_by}",
            f"{reason}.",
            remediation=f"Publish the public key of dkim.key_file as a TXT record at "
            f"{watch.signed_by}, or correct dkim.selector.",
        )
    return Outcome(
        Status.FAIL,
        f"The company server breaks DKIM before the copy: {reason}",
        "A signed header or the body changed on the company server (a subject tag, a "
        "disclaimer): candidates' signatures break the same way, and their domains' DMARC "
        "policies then refuse or junk their mail after the redirection.",
        Cause.POLICY_REJECTED,
        f"Exempt {trip.address} from subject tagging and disclaimers (see headers.retention).",
    )


def classify_kept_copy(trip: RoundTrip, inbound: str) -> Outcome:
    """headers.retention in a live round trip: what the company server changed before it
    kept its copy (a subject tag or a footer is added before the redirection on most
    servers); the platform's own copy needs the export."""
    watch = trip.live
    export = (
        "What the platform received can be compared too: save the test message from the "
        "platform as .eml and run `maildiag headers ARRIVED.eml --original SENT.eml`."
    )
    if watch is not None and watch.mailbox_error is not None:
        return Outcome(Status.SKIP, "Mailbox not read", "See redirect.roundtrip. " + export)
    if watch is not None and not watch.sent:
        return Outcome(Status.SKIP, "No test message sent", "See redirect.roundtrip. " + export)
    if not trip.local_copies:
        return Outcome(Status.SKIP, "No kept copy to compare", "See redirect.local_copy. " + export)
    copy = trip.local_copies[0]
    retention = compare_retention(trip.sent, copy.data)
    tagged = subject_tag(retention.diff("Subject"))
    if tagged is not None:
        tag, where = tagged
        return Outcome(
            Status.FAIL,
            f"The company server tags the subject ({tag!r})",
            f"The copy kept in {trip.address} ({copy.folder}) has {tag!r} as a {where} of its "
            "subject: the server changes candidates' mail before the redirection, so the "
            "platform shows the tag and cannot match replies to their thread by subject.",
            Cause.UNKNOWN,
            remediation_for(
                "subject_tagged",
                server_family(copy.data),
                custom_address=trip.address,
                inbound_address=inbound,
            )
            + " "
            + export,
        )
    if retention.structure_changed or any(d.kind == "missing" for d in retention.diffs):
        changes = "; ".join(d.describe() for d in retention.diffs) or "the MIME structure changed"
        return Outcome(
            Status.WARN,
            "The company server changes the message before it keeps the copy",
            f"The copy kept in {trip.address} differs from the test message as sent: {changes}.",
            remediation=f"Exempt mail to {trip.address} from the rule that rewrites it. " + export,
        )
    return Outcome(
        Status.PASS,
        "The kept copy has the original headers",
        f"The copy in {trip.address} ({copy.folder}) arrived with its headers and body as "
        "sent. " + export,
    )


async def _for_addresses(
    context: Context, check_id: str, judge: Callable[[RoundTrip], Awaitable[Judged]]
) -> list[Finding]:
    """One finding per custom address; a root cause that ``judge`` names joins the evidence
    of a finding that needs attention (``root_cause``)."""
    causes: dict[str, dict[str, Any]] = {}

    async def judged(trip: RoundTrip) -> Outcome:
        outcome, cause = await judge(trip)
        if cause is not None and outcome.status >= Status.WARN:
            causes[trip.address] = cause
        return outcome

    findings = await per_roundtrip(context, check_id, judged, live=_live)
    return [_with_root_cause(f, causes) for f in findings]


def _with_root_cause(finding: Finding, causes: Mapping[str, Mapping[str, Any]]) -> Finding:
    cause = causes.get(str(finding.evidence.get("address")))
    if cause is None:
        return finding
    return replace(finding, evidence={**finding.evidence, "root_cause": cause})


@check("headers.retention", flow="inbound", title="Original headers retained")
async def retention(context: Context) -> list[Finding]:
    inbound = context.config.inbound_address

    async def judge(trip: RoundTrip) -> Judged:
        if trip.live is not None:
            return classify_kept_copy(trip, inbound), None
        cause = redirection_root_cause(trip, "headers.retention", inbound)
        return classify_retention(trip, inbound), cause

    return await _for_addresses(context, "headers.retention", judge)


@check("headers.forwarding_style", flow="inbound", title="Redirected, not forwarded")
async def forwarding_style(context: Context) -> list[Finding]:
    inbound = context.config.inbound_address

    async def judge(trip: RoundTrip) -> Judged:
        if trip.live is not None:
            return _live(trip.address), None
        cause = redirection_root_cause(trip, "headers.forwarding_style", inbound)
        return classify_style(trip, inbound), cause

    return await _for_addresses(context, "headers.forwarding_style", judge)


@check("headers.dkim", flow="inbound", title="The original DKIM signature survives")
async def dkim_survives(context: Context) -> list[Finding]:
    mailboxes = context.mailboxes

    async def judge(trip: RoundTrip) -> Judged:
        arrival = trip.arrived
        if trip.live is not None:
            watch = trip.live
            if not watch.signed_by or not trip.local_copies or watch.mailbox_error:
                return classify_kept_dkim(trip, []), None
            return classify_kept_dkim(
                trip, await verify(trip.local_copies[0].data, context.resolver)
            ), None
        if arrival is None:
            return _not_arrived(trip), None
        if mailboxes is None or mailboxes.dkim_key is None:
            outcome = Outcome(
                Status.SKIP,
                "The test message was not signed",
                "No DKIM key is published for the test sender.",
            )
            return outcome, None
        signer = mailboxes.dkim_key.domain
        checks = await verify(arrival.data, context.resolver)
        inner = _attached(arrival.data)
        attached = await verify(inner, context.resolver) if inner else []
        broke = dkim_breakage(checks, signer)
        cause = redirection_root_cause(
            trip, "headers.dkim", context.config.inbound_address, dkim_broke=broke
        )
        return classify_dkim(checks, signer, attached), cause

    return await _for_addresses(context, "headers.dkim", judge)
