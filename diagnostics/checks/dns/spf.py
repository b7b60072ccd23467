"""The ``dns.spf`` check: the SPF record of the custom address's domain.

Pure tier: :func:`classify_spf` (one record, valid, within the RFC 7208 limits, not
authorising everyone, and authorising each SMTP host the platform sends through), over the
evaluations of :mod:`diagnostics.parse.spf`. :func:`authorise` evaluates the record for each
address of an SMTP host (:class:`HostAuthorisation`); ``dns.dmarc`` uses it for alignment.
The registered check is :func:`spf_record`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from diagnostics.checks.dns.shared import (
    Issue,
    Sender,
    combine,
    custom_addresses_of,
    listing,
    no_custom_address,
    per_group,
    resolve_host,
    sentence,
    smtp_hosts_of,
)
from diagnostics.context import Context
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net.dns import DNSAnswer, DNSQueries
from diagnostics.parse import spf as spf_records
from diagnostics.registry import check

__all__ = ["SPF_PROBE", "HostAuthorisation", "authorise", "classify_spf", "spf_record"]

# Reserved (class E): no sound SPF record authorises it, so evaluating for it walks every
# term up to the final "all", and a pass means the record authorises everyone.
SPF_PROBE: Final = ipaddress.IPv4Address("240.0.0.1")

_SPF_SEVERITY: Final = ("pass", "none", "neutral", "softfail", "fail", "temperror", "permerror")


@dataclass(frozen=True)
class HostAuthorisation:
    """The SPF verdict of a domain for each address of one SMTP host.

    ``failure`` says why the host's addresses are unknown (then ``evaluations`` is empty).
    """

    host: str
    evaluations: tuple[spf_records.SpfEvaluation, ...] = ()
    failure: str = ""

    @property
    def result(self) -> str:
        """``pass`` when every address passes, else the gravest result; ``unknown``."""
        if self.failure or not self.evaluations:
            return "unknown"
        return max((e.result for e in self.evaluations), key=_SPF_SEVERITY.index)

    def describe(self) -> str:
        if self.failure:
            return f"{self.host}: not evaluated ({self.failure})"
        shown = ", ".join(f"{e.ip} {e.result}" for e in self.evaluations)
        return f"{self.host}: {shown}"


def _spf_term(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"a:{host}"
    return f"ip{address.version}:{address}"


def _with_terms(record: str, terms: Sequence[str]) -> str:
    """``record`` with ``terms`` inserted before its ``all`` (or ``redirect=``), else appended."""
    parts = record.split()
    for index, part in enumerate(parts):
        lowered = part.lower().lstrip("+-~?")
        if index and (lowered == "all" or lowered.startswith("redirect=")):
            return " ".join([*parts[:index], *terms, *parts[index:]])
    return " ".join([*parts, *terms])


def classify_spf(
    domain: str,
    txt: DNSAnswer,
    walk: spf_records.SpfEvaluation | None,
    hosts: Sequence[HostAuthorisation],
    *,
    senders: Sequence[str],
) -> Outcome:
    """The SPF record of ``domain``: one record, valid, within the RFC 7208 limits, not
    authorising everyone, and authorising each SMTP host the platform sends through.

    ``walk`` is the evaluation for :data:`SPF_PROBE` with ``measure=True`` (None when there
    is not exactly one record); ``hosts`` has one entry per SMTP host sending as ``domain``
    (not evaluated when ``walk`` is None or failed); ``senders`` are the custom addresses.
    """
    suggested = [_spf_term(h.host) for h in hosts] or ["mx"]
    if txt.failed:
        return Outcome(
            Status.ERROR,
            f"SPF record of {domain} could not be looked up",
            f"{txt.describe()}. Receivers meet the same failure (SPF temperror) and may defer "
            "candidate mail.",
            Cause.DNS_FAILURE,
            f"Run the check again. If it fails again, ask the DNS provider of {domain} why "
            f"its name servers do not answer `dig TXT {domain}`.",
        )
    texts = [t for t in txt.records if spf_records.is_spf_record(t)]
    if not texts:
        found = txt.describe() if txt.kind != "answer" else f"{txt.query}: none starts with v=spf1"
        through = (
            f", including mail the platform sends through {listing([h.host for h in hosts])}"
            if hosts
            else ""
        )
        return Outcome(
            Status.WARN,
            f"No SPF record for {domain}",
            f"{found}. Receivers cannot tell which servers may send as {listing(senders)} "
            f"and may junk or reject candidate mail{through} (SPF result none).",
            remediation=f"Publish a TXT record at {domain}: `{domain}. 3600 IN TXT "
            f'"v=spf1 {" ".join(suggested)} -all"` (add the include: of every other service '
            f"that sends as {domain}, e.g. your mail provider).",
        )
    if len(texts) > 1:
        listed = "; ".join(f'"{t}"' for t in texts)
        return Outcome(
            Status.FAIL,
            f"{domain} publishes {len(texts)} SPF records (permerror)",
            f"{txt.query}: {listed}. RFC 7208 section 4.5 allows one: receivers treat "
            "several as permerror and may reject candidate mail.",
            Cause.POLICY_REJECTED,
            f"Merge the {len(texts)} SPF records at {domain} into one TXT record starting "
            "with v=spf1 that lists every server and include: of them, and delete the others.",
        )
    assert walk is not None
    lookups = f"{walk.lookups} of {spf_records.MAX_DNS_TERMS} DNS lookups"
    parts = [f'{domain}: "{texts[0]}"', f"Evaluation needs {lookups}"]
    if walk.void_lookups:
        parts.append(f"{walk.void_lookups} void lookup(s) of {spf_records.MAX_VOID_LOOKUPS}")
    if walk.unevaluated:
        parts.append(
            "Terms with macros were not evaluated (they stand for a message's sender and client, "
            "which the record alone does not give): " + ", ".join(walk.unevaluated)
        )
    if walk.result == "temperror":
        return Outcome(
            Status.ERROR,
            f"SPF record of {domain} could not be evaluated (temperror)",
            ". ".join([*parts, sentence(walk.problem)]) + ".",
            Cause.DNS_FAILURE,
            f"Run the check again. If it fails again, the name in '{walk.problem}' does not "
            "answer: ask its DNS provider, or remove the term that needs it from the record.",
        )
    if walk.result == "permerror":
        if walk.limit_exceeded:
            top = sorted((i for i in walk.includes if i.depth == 0), key=lambda i: -i.lookups)
            costs = listing([f"{i.term} ({i.lookups} lookups)" for i in top]) or "none"
            measured = (
                f"at least {walk.lookups}"
                if walk.lookups >= spf_records.MEASURE_CAP
                else str(walk.lookups)
            )
            parts[1] = f"Evaluation needs {measured} DNS lookups"
            remediation = (
                f"Receivers stop at {spf_records.MAX_DNS_TERMS} DNS lookups and treat the "
                f"record as permerror. In the TXT record at {domain}, flatten or remove "
                f"includes (their cost: {costs}): replace the largest with the ip4:/ip6: "
                "ranges it publishes, or remove services that no longer send as "
                f"{domain}, until the count is {spf_records.MAX_DNS_TERMS} or less."
            )
            title = f"SPF record of {domain} needs more than 10 DNS lookups (permerror)"
        elif walk.void_lookups > spf_records.MAX_VOID_LOOKUPS:
            title = f"SPF record of {domain} has more than 2 void lookups (permerror)"
            remediation = (
                f"In the TXT record at {domain}, remove the terms whose names do not exist "
                "or have no record (listed in the detail), or publish those names."
            )
        else:
            title = f"SPF record of {domain} is invalid (permerror)"
            remediation = f"Correct the TXT record at {domain}: {walk.problem}."
        return Outcome(
            Status.FAIL,
            title,
            ". ".join([*parts, sentence(walk.problem)]) + ". Receivers may reject candidate mail.",
            Cause.POLICY_REJECTED,
            remediation,
        )
    issues: list[Issue] = []
    if walk.result == "pass":
        parts.append(
            f"The record authorises every address on the internet ({walk.matched} matches "
            f"{SPF_PROBE}, an address no server sends from)"
        )
        issues.append(
            Issue(
                Status.WARN,
                f"SPF record of {domain} authorises everyone",
                f"In the TXT record at {domain}, replace the term that matches everything "
                "(+all, or an ip4:/a with /0) with -all or ~all after the servers that "
                "really send.",
            )
        )
    for host in hosts:
        parts.append(f"SPF result for {host.describe()}")
        result = host.result
        if result in ("pass", "unknown"):
            continue
        problems = [e.problem for e in host.evaluations if e.problem]
        if result == "permerror":
            issues.append(
                Issue(
                    Status.FAIL,
                    f"SPF evaluation for {host.host} ends in permerror",
                    f"Correct the TXT record at {domain}: {problems[0]}.",
                    Cause.POLICY_REJECTED,
                )
            )
            continue
        if result == "temperror":
            issues.append(
                Issue(
                    Status.ERROR,
                    f"SPF evaluation for {host.host} ends in temperror",
                    f"Run the check again; if it fails again, {problems[0]}.",
                    Cause.DNS_FAILURE,
                )
            )
            continue
        parts.append(
            f"Receivers may reject or junk candidate mail the platform sends through "
            f"{host.host} ({result})"
        )
        issues.append(
            Issue(
                Status.WARN,
                f"SPF record of {domain} does not authorise SMTP host {host.host}",
                f"Add `{_spf_term(host.host)}` (or the include: your mail provider documents) "
                f"to the TXT record at {domain}, e.g. `{domain}. 3600 IN TXT "
                f'"{_with_terms(texts[0], [_spf_term(host.host)])}"`.',
            )
        )
    if not hosts:
        parts.append("No SMTP host sends as this domain: the platform sends from its own address")
    passed = f"SPF record of {domain} is valid and within the limits"
    if hosts and all(h.result == "pass" for h in hosts):
        passed = f"SPF record of {domain} authorises {listing([h.host for h in hosts])}"
    return combine(issues, passed, ". ".join(parts) + ".")


async def authorise(queries: DNSQueries, domain: str, host: str) -> HostAuthorisation:
    addresses, answers = await resolve_host(queries, host)
    if not addresses:
        reason = listing([a.describe() for a in answers])
        return HostAuthorisation(host, failure=f"it does not resolve: {reason}")
    evaluations = [
        await spf_records.check_host(address, domain, lookup=queries) for address in addresses
    ]
    return HostAuthorisation(host, tuple(evaluations))


def _evaluation_evidence(evaluation: spf_records.SpfEvaluation) -> dict[str, Any]:
    return {
        "ip": evaluation.ip,
        "result": evaluation.result,
        "problem": evaluation.problem,
        "matched": evaluation.matched,
        "lookups": evaluation.lookups,
        "void_lookups": evaluation.void_lookups,
    }


@check("dns.spf", flow="outbound", title="SPF record of the custom address's domain")
async def spf_record(context: Context) -> list[Finding]:
    async def evaluate(domain: str, group: list[Sender]) -> tuple[Outcome, dict[str, Any]]:
        queries = DNSQueries.of(context)
        txt = await queries(domain, "TXT")
        texts = [t for t in txt.records if spf_records.is_spf_record(t)]
        walk = None
        if len(texts) == 1:
            walk = await spf_records.check_host(SPF_PROBE, domain, lookup=queries, measure=True)
        if walk is not None and walk.result not in ("permerror", "temperror"):
            hosts = [await authorise(queries, domain, h) for h in smtp_hosts_of(group)]
        else:
            hosts = [HostAuthorisation(h, failure="not evaluated") for h in smtp_hosts_of(group)]
        outcome = classify_spf(domain, txt, walk, hosts, senders=custom_addresses_of(group))
        evidence: dict[str, Any] = {
            "domain": domain,
            "queries": queries.evidence(),
            "records": texts,
        }
        if walk is not None:
            evidence["lookups"] = walk.lookups
            evidence["void_lookups"] = walk.void_lookups
            evidence["includes"] = [
                {"term": i.term, "in": i.domain, "lookups": i.lookups} for i in walk.includes
            ]
            evidence["unevaluated"] = list(walk.unevaluated)
            evidence["probe"] = _evaluation_evidence(walk)
        evidence["hosts"] = [
            {
                "host": h.host,
                "result": h.result,
                "failure": h.failure,
                "evaluations": [_evaluation_evidence(e) for e in h.evaluations],
            }
            for h in hosts
        ]
        return outcome, evidence

    missing = no_custom_address("dns.spf", context)
    return await per_group(context, "dns.spf", lambda s: s.domain, "domain", evaluate, missing)
