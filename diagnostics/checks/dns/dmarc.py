"""The ``dns.dmarc`` check: the DMARC policy that applies to the custom address's domain.

Pure tier: :func:`classify_dmarc` (the policy found by :mod:`diagnostics.parse.dmarc`, and
what it means for mail the company redirects to the platform and mail the platform sends
through each SMTP host, :class:`SenderAlignment`). The registered check is
:func:`dmarc_record`; it takes SPF alignment from :func:`diagnostics.checks.dns.spf.authorise`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diagnostics.checks.dns.shared import (
    Issue,
    Sender,
    combine,
    custom_addresses_of,
    listing,
    no_custom_address,
    per_group,
    smtp_hosts_of,
)
from diagnostics.checks.dns.spf import authorise
from diagnostics.context import Context
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net.dns import DNSQueries
from diagnostics.parse import dmarc as dmarc_records
from diagnostics.registry import check

__all__ = ["SenderAlignment", "classify_dmarc", "dmarc_record"]


@dataclass(frozen=True)
class SenderAlignment:
    """How one SMTP host sending as the domain fares with SPF: its result for the domain."""

    host: str
    spf: str


def classify_dmarc(
    domain: str,
    discovery: dmarc_records.Discovery,
    *,
    domain_exists: bool,
    senders: Sequence[SenderAlignment],
    addresses: Sequence[str],
    inbound_address: str,
) -> Outcome:
    """The DMARC policy that applies to ``domain`` and what it means for this setup: mail the
    company redirects to ``inbound_address``, and mail the platform sends as ``addresses``
    through the SMTP hosts in ``senders``."""
    to = listing(addresses)
    queried = ", ".join(discovery.queried)
    if discovery.failure is not None:
        return Outcome(
            Status.ERROR,
            f"DMARC policy of {domain} could not be looked up",
            f"Queried {queried}. {discovery.failure}.",
            Cause.DNS_FAILURE,
            f"Run the check again. If it fails again, ask the DNS provider of {domain} why "
            f"its name servers do not answer `dig TXT _dmarc.{domain}`.",
        )
    ignored = [f"Ignored: {reason}" for reason in discovery.ignored]
    record, policy = discovery.record, discovery.policy(domain_exists=domain_exists)
    if record is None or policy is None:
        return Outcome(
            Status.WARN,
            f"No DMARC record for {domain}",
            ". ".join(
                [
                    f"Queried {queried}: none holds a DMARC record",
                    *ignored,
                    f"Candidates' mail providers cannot apply a policy for {domain}; that is "
                    f"no failure for this setup, but anyone can send as {to} without "
                    "receivers noticing",
                ]
            )
            + ".",
            remediation=f"Publish a TXT record at _dmarc.{domain}: `_dmarc.{domain}. 3600 IN "
            f'TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"`, read the reports, '
            "then tighten the policy to p=quarantine.",
        )
    value, tag = policy
    where = f'Record at _dmarc.{discovery.found_at}: "{record.text}"'
    if discovery.inherited:
        because = " does not exist, so it" if not domain_exists and tag == "np" else ""
        where += f"; found at a parent of {domain}, which{because} takes {tag}={value}"
    parts = [f"Queried {queried}", *ignored, where]
    parts += [f"Note: {note}" for note in record.notes]
    if record.testing:
        parts.append("t=y: receivers are asked to treat the policy as a test and apply less")
    issues: list[Issue] = []
    if record.p is None:
        issues.append(
            Issue(
                Status.WARN,
                f"DMARC record of {domain} has no valid policy",
                f"Set p=none, p=quarantine or p=reject in the TXT record at "
                f"_dmarc.{discovery.found_at}.",
            )
        )
    for sender in senders:
        if sender.spf == "pass":
            parts.append(
                f"SPF passes for {sender.host} and the envelope sender is in {domain} itself, "
                f"so SPF aligns (aspf={record.aspf})"
            )
        else:
            parts.append(
                f"SPF gives {sender.spf} for {sender.host}: SPF does not align, so DMARC for "
                f"the platform's mail from {to} rests on DKIM alone"
            )
            if value != "none":
                issues.append(
                    Issue(
                        Status.WARN,
                        f"DMARC p={value} for {domain}, but SPF does not align for {sender.host}",
                        f"Authorise {sender.host} in the SPF record of {domain} (see dns.spf) "
                        f"so that the platform's mail from {to} aligns without depending on "
                        "DKIM.",
                    )
                )
    if senders:
        parts.append(
            f"DKIM must be signed by your server with d={domain} (adkim={record.adkim}); "
            "maildiag cannot verify that without a message it sent (headers.dkim checks a "
            "received one)"
        )
    else:
        parts.append(
            "The platform sends from its own address (no SMTP settings), so this policy does "
            "not touch its outgoing mail"
        )
    if value == "none":
        parts.append(f"{tag}=none only asks for reports: receivers deliver mail that fails DMARC")
        title = f"DMARC policy of {domain} is none (monitoring only)"
        return combine(issues, title, ". ".join(parts) + ".")
    parts.append(
        f"Mail that candidates send to {to} and your server redirects to {inbound_address} "
        "is judged at the platform by the DMARC policy of the candidate's own domain: SPF "
        "fails there (your MX is not in the candidate's SPF record) unless your server "
        "rewrites the envelope sender with SRS, and even then SPF does not align with the "
        "candidate's From; DMARC then rests on the candidate's DKIM signature surviving the "
        "redirection, or on ARC. Candidates' domains are not known in advance, but "
        f"{domain} itself publishes {tag}={value}, so mail the platform sends from {to} that "
        "your server forwards internally meets the same issue"
    )
    if value == "reject":
        issues.append(
            Issue(
                Status.WARN,
                f"DMARC policy of {domain} is reject: redirected mail depends on DKIM",
                f"On the server that redirects {to} to {inbound_address}: redirect, do not "
                "forward: keep the original headers and body unchanged so DKIM survives; if "
                "your server rewrites the envelope sender (SRS), SPF alignment still fails but "
                "DKIM carries DMARC; enable ARC sealing if your server supports it (Microsoft "
                "365 does for trusted ARC sealers, Google Workspace seals).",
            )
        )
    return combine(issues, f"DMARC policy of {domain} is {value}", ". ".join(parts) + ".")


@check("dns.dmarc", flow="inbound", title="DMARC policy of the custom address's domain")
async def dmarc_record(context: Context) -> list[Finding]:
    config = context.config

    async def evaluate(domain: str, group: list[Sender]) -> tuple[Outcome, dict[str, Any]]:
        queries = DNSQueries.of(context)
        discovery = await dmarc_records.discover(domain, lookup=queries)
        domain_exists = True
        if discovery.inherited:
            domain_exists = (await queries(domain, "MX")).kind != "nxdomain"
        senders: list[SenderAlignment] = []
        if discovery.record is not None:
            for host in smtp_hosts_of(group):
                authorisation = await authorise(queries, domain, host)
                senders.append(SenderAlignment(host, authorisation.result))
        outcome = classify_dmarc(
            domain,
            discovery,
            domain_exists=domain_exists,
            senders=senders,
            addresses=custom_addresses_of(group),
            inbound_address=config.inbound_address,
        )
        record = discovery.record
        policy = discovery.policy(domain_exists=domain_exists)
        evidence = {
            "domain": domain,
            "queries": queries.evidence(),
            "queried": list(discovery.queried),
            "found_at": discovery.found_at,
            "record": record.text if record else None,
            "policy": policy[0] if policy else None,
            "policy_tag": policy[1] if policy else None,
            "spf_alignment": [{"host": s.host, "spf": s.spf} for s in senders],
        }
        return outcome, evidence

    missing = no_custom_address("dns.dmarc", context)
    return await per_group(context, "dns.dmarc", lambda s: s.domain, "domain", evaluate, missing)
