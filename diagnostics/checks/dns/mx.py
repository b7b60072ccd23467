"""The ``dns.mx`` check: whether mail to the custom address's domain can be delivered.

Pure tier: :func:`parse_mx` and :func:`classify_mx` (MX records whose hosts resolve, or the
domain's own address when it has none). The registered check :func:`mx_records` looks the
records and their hosts up through :class:`~diagnostics.net.dns.DNSQueries`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from diagnostics.checks.dns.shared import (
    Sender,
    answer_addresses,
    custom_addresses_of,
    listing,
    no_custom_address,
    per_group,
)
from diagnostics.context import Context
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net.dns import DNSAnswer, DNSQueries, query_addresses
from diagnostics.profiles import PlatformProfile
from diagnostics.registry import check

__all__ = ["MXHost", "classify_mx", "mx_records", "parse_mx"]


@dataclass(frozen=True)
class MXHost:
    """One MX record: preference and exchange host (``"."`` for a null MX)."""

    preference: int
    host: str

    @property
    def is_null(self) -> bool:
        return self.host == "."


def parse_mx(records: Iterable[str]) -> tuple[MXHost, ...]:
    """MX records in presentation form, sorted by preference (then host)."""
    hosts = []
    for record in records:
        preference, _, exchange = record.partition(" ")
        host = exchange.strip().rstrip(".").lower() or "."
        hosts.append(MXHost(int(preference), host))
    return tuple(sorted(hosts, key=lambda h: (h.preference, h.host)))


def _mx_example(domain: str) -> str:
    return f"`{domain}. 3600 IN MX 10 mx.{domain}.`"


def classify_mx(
    domain: str,
    mx: DNSAnswer,
    *,
    hosts: Mapping[str, Sequence[DNSAnswer]],
    implicit: Sequence[DNSAnswer],
    recipients: Sequence[str],
    profile: PlatformProfile,
) -> Outcome:
    """Whether mail to ``domain`` can be delivered: MX records whose hosts resolve.

    ``hosts`` holds the A/AAAA answers of each MX host; ``implicit`` the A/AAAA answers of
    the domain itself (only looked at when it has no MX: RFC 5321 section 5.1).
    """
    to = listing(recipients)
    publish = (
        f"Publish an MX record for {domain} pointing to your mail server, e.g. "
        f"{_mx_example(domain)}; candidates' mail to {to} cannot be delivered until then."
    )
    if mx.failed:
        return Outcome(
            Status.ERROR,
            f"MX records of {domain} could not be looked up",
            f"{mx.describe()}. Whether {domain} receives mail could not be established; "
            "candidates' mail servers meet the same failure and retry or bounce.",
            Cause.DNS_FAILURE,
            f"Run the check again. If it fails again, ask the DNS provider of {domain} why "
            f"its name servers do not answer `dig MX {domain}`.",
        )
    if mx.kind == "nxdomain":
        return Outcome(
            Status.FAIL,
            f"{domain} does not exist in DNS",
            f"{mx.describe()}. Mail to {to} bounces.",
            Cause.DNS_FAILURE,
            f"Check the spelling of the custom address in {profile.ui.settings_path}. If it "
            f"is right, publish the zone {domain} with an MX record pointing to your mail "
            f"server, e.g. {_mx_example(domain)}; candidates' mail to {to} cannot be "
            "delivered until then.",
        )
    if mx.kind == "nodata":
        addresses = answer_addresses(implicit)
        if addresses:
            return Outcome(
                Status.WARN,
                f"{domain} has no MX record; mail goes to its address record (implicit MX)",
                f"{mx.describe()}. Senders fall back to the address of {domain} itself "
                f"({listing(addresses)}, RFC 5321 section 5.1), so mail to {to} works only "
                "if a mail server listens there; many senders and filters treat a domain "
                "without MX as suspect.",
                remediation=publish,
            )
        failed = [a for a in implicit if a.failed]
        if failed:
            return Outcome(
                Status.ERROR,
                f"{domain} has no MX record and its address could not be looked up",
                f"{mx.describe()}. {listing([a.describe() for a in failed])}.",
                Cause.DNS_FAILURE,
                publish,
            )
        return Outcome(
            Status.FAIL,
            f"{domain} has no MX record",
            f"{mx.describe()}, and no A or AAAA record to fall back to (implicit MX). "
            f"Mail to {to} bounces.",
            Cause.DNS_FAILURE,
            publish,
        )
    records = parse_mx(mx.records)
    if any(record.is_null for record in records):
        return Outcome(
            Status.FAIL,
            f"{domain} publishes a null MX: it accepts no mail",
            f"{mx.describe()}: {listing(list(mx.records))}. A null MX (`0 .`, RFC 7505) "
            f"declares that {domain} receives no mail at all; mail to {to} bounces at once.",
            Cause.DNS_FAILURE,
            f"Replace the null MX of {domain} with the MX of your mail server, e.g. "
            f"{_mx_example(domain)}; candidates' mail to {to} cannot be delivered until then.",
        )
    shown = []
    resolved, unresolved, failed_hosts = [], [], []
    for record in records:
        answers = hosts.get(record.host, ())
        addresses = answer_addresses(answers)
        if addresses:
            resolved.append(record.host)
            shown.append(f"{record.preference} {record.host} ({', '.join(addresses)})")
        elif any(a.failed for a in answers):
            failed_hosts.append(record.host)
            shown.append(f"{record.preference} {record.host} (could not be resolved)")
        else:
            unresolved.append(record.host)
            shown.append(f"{record.preference} {record.host} (does not resolve)")
    listed = "; ".join(shown)
    if not resolved:
        broken = unresolved + failed_hosts
        problems = [a.describe() for h in broken for a in hosts.get(h, ())]
        if failed_hosts:
            return Outcome(
                Status.ERROR,
                f"MX hosts of {domain} could not be resolved",
                f"MX {listed}. {listing(problems)}.",
                Cause.DNS_FAILURE,
                f"Run the check again. If it fails again, ask the DNS provider of "
                f"{listing(failed_hosts)} why its name servers do not answer.",
            )
        return Outcome(
            Status.FAIL,
            f"MX host{'s' if len(broken) > 1 else ''} of {domain} "
            f"{'do' if len(broken) > 1 else 'does'} not resolve",
            f"MX {listed}. {listing(problems)}. Senders find no address to deliver "
            f"mail to {to} to.",
            Cause.DNS_FAILURE,
            f"Publish an A record for {listing(broken)} with the public address of your "
            f"mail server (e.g. `{broken[0]}. 3600 IN A <address>`), or point the MX record "
            f"of {domain} at a host that has one, e.g. {_mx_example(domain)}; candidates' "
            f"mail to {to} cannot be delivered until then.",
        )
    if unresolved or failed_hosts:
        broken = unresolved + failed_hosts
        return Outcome(
            Status.WARN,
            f"Some MX hosts of {domain} do not resolve",
            f"MX {listed}. Senders skip {listing(broken)} and deliver to "
            f"{listing(resolved)}; mail to {to} arrives, without the fallback you meant "
            "to have.",
            remediation=f"Publish an A record for {listing(broken)} or remove "
            f"{'their MX records' if len(broken) > 1 else 'its MX record'} from {domain}.",
        )
    return Outcome(
        Status.PASS,
        f"{domain} has MX records that resolve",
        f"MX {listed}; mail to {to} can be delivered.",
    )


@check("dns.mx", flow="inbound", title="MX records of the custom address's domain")
async def mx_records(context: Context) -> list[Finding]:
    profile = context.config.profile

    async def evaluate(domain: str, group: list[Sender]) -> tuple[Outcome, dict[str, Any]]:
        queries = DNSQueries.of(context)
        mx = await queries(domain, "MX")
        hosts: dict[str, Sequence[DNSAnswer]] = {}
        implicit: Sequence[DNSAnswer] = ()
        records = parse_mx(mx.records) if mx.kind == "answer" else ()
        if mx.kind == "nodata":
            implicit = await query_addresses(queries, domain)
        elif records and not any(r.is_null for r in records):
            resolved = await asyncio.gather(*(query_addresses(queries, r.host) for r in records))
            hosts = dict(zip([r.host for r in records], resolved, strict=True))
        outcome = classify_mx(
            domain,
            mx,
            hosts=hosts,
            implicit=implicit,
            recipients=custom_addresses_of(group),
            profile=profile,
        )
        evidence = {
            "domain": domain,
            "queries": queries.evidence(),
            "mx": [
                {
                    "preference": r.preference,
                    "host": r.host,
                    "addresses": list(answer_addresses(hosts.get(r.host, ()))),
                }
                for r in records
            ],
        }
        return outcome, evidence

    missing = no_custom_address("dns.mx", context)
    return await per_group(context, "dns.mx", lambda s: s.domain, "domain", evaluate, missing)
