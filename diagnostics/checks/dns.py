"""DNS checks: ``dns.mx``, ``dns.smtp_host``, ``dns.spf``, ``dns.dmarc``.

I/O tier: :mod:`diagnostics.net.dns` (:func:`query_dns`, :class:`DNSAnswer`, and
:class:`DNSQueries`, the DNS as one finding sees it); a finding says which resolver answered,
and when the run's resolver does not work every DNS finding says so instead of blaming a name.
Pure tier: :func:`parse_mx`, :func:`unreachable_reason`, :func:`classify_mx`,
:func:`classify_smtp_host`, :func:`classify_spf`, :func:`classify_dmarc`.
Registered checks make one finding per company or subcompany. Where two of them share a
domain (or an SMTP host) it is checked once: the first subject's finding says so in its
detail, the others get a ``skip`` pointing to it.

Longer than 600 lines for now: the classifiers of four record families and their
registrations, to be split per family.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from diagnostics.config import AccountConfig, SmtpSettings
from diagnostics.context import Context, Mode
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net.dns import (
    NEGATIVE,
    AnswerKind,
    DNSAnswer,
    DNSQueries,
    describe_resolver,
    query_dns,
    started_health,
)
from diagnostics.parse import dmarc as dmarc_records
from diagnostics.parse import spf as spf_records
from diagnostics.profiles import PlatformProfile
from diagnostics.registry import check
from diagnostics.resolverfault import local_resolver_finding
from diagnostics.unplayed import unplayed_outcome

__all__ = [
    "SPF_PROBE",
    "AnswerKind",
    "DNSAnswer",
    "DNSQueries",
    "classify_dmarc",
    "classify_mx",
    "classify_smtp_host",
    "classify_spf",
    "parse_mx",
    "query_addresses",
    "query_dns",
    "unreachable_reason",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Reserved (class E): no sound SPF record authorises it, so evaluating for it walks every
# term up to the final "all", and a pass means the record authorises everyone.
SPF_PROBE: Final = ipaddress.IPv4Address("240.0.0.1")

_SPF_SEVERITY: Final = ("pass", "none", "neutral", "softfail", "fail", "temperror", "permerror")


# -- I/O tier ---------------------------------------------------------------------------------


async def query_addresses(queries: DNSQueries, host: str) -> tuple[DNSAnswer, DNSAnswer]:
    """The A and AAAA answers for ``host``."""
    a, aaaa = await asyncio.gather(queries(host, "A"), queries(host, "AAAA"))
    return a, aaaa


def _addresses(answers: Iterable[DNSAnswer]) -> tuple[str, ...]:
    return tuple(r for a in answers if a.kind == "answer" for r in a.records)


# -- pure tier --------------------------------------------------------------------------------


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


_DOCUMENTATION: Final = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)

_UNREACHABLE: Final = tuple(
    (ipaddress.ip_network(network), reason)
    for network, reason in (
        ("0.0.0.0/8", "an unspecified address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a shared address (carrier-grade NAT, 100.64.0.0/10)"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "a reserved address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a reserved address (benchmarking)"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("fc00::/7", "a private address"),
        ("fe80::/10", "a link-local address"),
        ("ff00::/8", "a multicast address"),
    )
)


def unreachable_reason(address: IPAddress | str, mode: Mode) -> str | None:
    """Why the platform's servers cannot reach ``address`` (``"a private address"``), or
    None when it is a public address they can reach."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # The sandbox's DNS plays the world's public servers with documentation addresses
    # (RFC 5737, RFC 3849), so only there do they count as public; live, nobody routes them.
    if any(ip in network for network in _DOCUMENTATION):
        if mode == "sandbox":
            return None
        return "a documentation address (RFC 5737/3849) that is not routed on the internet"
    for network, reason in _UNREACHABLE:
        if ip in network:
            return reason
    return None if ip.is_global else "a reserved address"


def _smtp_path(profile: PlatformProfile) -> str:
    ui = profile.ui
    return f"{ui.settings_path} > {ui.use_custom_address} Yes > {ui.use_for_sending} Yes"


def _listing(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


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
    to = _listing(recipients)
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
        addresses = _addresses(implicit)
        if addresses:
            return Outcome(
                Status.WARN,
                f"{domain} has no MX record; mail goes to its address record (implicit MX)",
                f"{mx.describe()}. Senders fall back to the address of {domain} itself "
                f"({_listing(addresses)}, RFC 5321 section 5.1), so mail to {to} works only "
                "if a mail server listens there; many senders and filters treat a domain "
                "without MX as suspect.",
                remediation=publish,
            )
        failed = [a for a in implicit if a.failed]
        if failed:
            return Outcome(
                Status.ERROR,
                f"{domain} has no MX record and its address could not be looked up",
                f"{mx.describe()}. {_listing([a.describe() for a in failed])}.",
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
            f"{mx.describe()}: {_listing(list(mx.records))}. A null MX (`0 .`, RFC 7505) "
            f"declares that {domain} receives no mail at all; mail to {to} bounces at once.",
            Cause.DNS_FAILURE,
            f"Replace the null MX of {domain} with the MX of your mail server, e.g. "
            f"{_mx_example(domain)}; candidates' mail to {to} cannot be delivered until then.",
        )
    shown = []
    resolved, unresolved, failed_hosts = [], [], []
    for record in records:
        answers = hosts.get(record.host, ())
        addresses = _addresses(answers)
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
                f"MX {listed}. {_listing(problems)}.",
                Cause.DNS_FAILURE,
                f"Run the check again. If it fails again, ask the DNS provider of "
                f"{_listing(failed_hosts)} why its name servers do not answer.",
            )
        return Outcome(
            Status.FAIL,
            f"MX host{'s' if len(broken) > 1 else ''} of {domain} "
            f"{'do' if len(broken) > 1 else 'does'} not resolve",
            f"MX {listed}. {_listing(problems)}. Senders find no address to deliver "
            f"mail to {to} to.",
            Cause.DNS_FAILURE,
            f"Publish an A record for {_listing(broken)} with the public address of your "
            f"mail server (e.g. `{broken[0]}. 3600 IN A <address>`), or point the MX record "
            f"of {domain} at a host that has one, e.g. {_mx_example(domain)}; candidates' "
            f"mail to {to} cannot be delivered until then.",
        )
    if unresolved or failed_hosts:
        broken = unresolved + failed_hosts
        return Outcome(
            Status.WARN,
            f"Some MX hosts of {domain} do not resolve",
            f"MX {listed}. Senders skip {_listing(broken)} and deliver to "
            f"{_listing(resolved)}; mail to {to} arrives, without the fallback you meant "
            "to have.",
            remediation=f"Publish an A record for {_listing(broken)} or remove "
            f"{'their MX records' if len(broken) > 1 else 'its MX record'} from {domain}.",
        )
    return Outcome(
        Status.PASS,
        f"{domain} has MX records that resolve",
        f"MX {listed}; mail to {to} can be delivered.",
    )


def classify_smtp_host(
    host: str,
    addresses: Sequence[str],
    answers: Sequence[DNSAnswer],
    *,
    mode: Mode,
    profile: PlatformProfile,
    port: int,
) -> Outcome:
    """Whether the platform can reach ``host``: it resolves, and to public addresses.

    ``answers`` are its A/AAAA answers (none for an IP literal, whose ``addresses`` is
    itself). Documentation addresses count as public in sandbox mode only
    (:func:`unreachable_reason`).
    """
    path = _smtp_path(profile)
    egress = _listing([str(n) for n in profile.egress_ips])
    if not addresses:
        failed = [a for a in answers if a.failed]
        problems = _listing([a.describe() for a in answers])
        if failed:
            return Outcome(
                Status.ERROR,
                f"SMTP host {host} could not be resolved",
                f"{problems}. Whether the platform can find {host} could not be established.",
                Cause.DNS_FAILURE,
                f"Run the check again. If it fails again, ask the DNS provider of {host} "
                f"why its name servers do not answer `dig A {host}`.",
            )
        exists = not any(a.kind == "nxdomain" for a in answers)
        return Outcome(
            Status.FAIL,
            f"SMTP host {host} {'has no address' if exists else 'does not exist in DNS'}",
            f"{problems}. The platform's connection test fails with a DNS error.",
            Cause.DNS_FAILURE,
            f"Publish an A record for {host} with your SMTP server's public address (e.g. "
            f"`{host}. 3600 IN A <public address>`), or in {path}, enter the host name your "
            "mail provider documents as Host.",
        )
    verdicts = [(a, unreachable_reason(a, mode)) for a in addresses]
    public = [a for a, reason in verdicts if reason is None]
    private = [(a, reason) for a, reason in verdicts if reason is not None]
    literal = list(addresses) == [host]
    note = ""
    if mode == "sandbox" and any(
        ipaddress.ip_address(a) in n for a in public for n in _DOCUMENTATION
    ):
        note = " (documentation addresses play public ones in the sandbox)"
    if private and not public:
        if literal:
            what = f"The SMTP host {host} is {private[0][1]} the platform's servers cannot reach."
            fix = "enter a public address"
        elif len(private) == 1:
            address, reason = private[0]
            what = f"{host} resolves to {address}, {reason} the platform's servers cannot reach."
            fix = f"publish a public A record for {host}"
        else:
            listed = _listing([f"{a} ({r})" for a, r in private])
            what = f"{host} resolves to {listed}: addresses the platform's servers cannot reach."
            fix = f"publish a public A record for {host}"
        return Outcome(
            Status.FAIL,
            f"SMTP host {host} is not reachable from the platform",
            f"{what} The platform's connection test times out.",
            Cause.CONNECTION_TIMEOUT,
            f"{what} Enter the public host name of your SMTP server (the one your mail "
            f"provider documents) in {path} > Host, or {fix} and allow the platform's egress "
            f"IPs {egress} to connect to port {port}.",
        )
    failed = [a for a in answers if a.failed]
    if private:
        listed = _listing([f"{a} ({r})" for a, r in private])
        return Outcome(
            Status.WARN,
            f"SMTP host {host} resolves to public and unreachable addresses",
            f"{host} resolves to {_listing(public)}{note} and to {listed}; the platform's "
            "connection fails whenever it picks an unreachable address.",
            remediation=f"Remove the records for {_listing([a for a, _ in private])} of "
            f"{host} from public DNS (keep them in your internal DNS if you need them), so "
            f"that the platform only finds {_listing(public)}.",
        )
    if failed:
        return Outcome(
            Status.WARN,
            f"SMTP host {host} resolves, but not every query was answered",
            f"{host} resolves to {_listing(public)}{note}. "
            f"{_listing([a.describe() for a in failed])}; "
            "the platform's resolver may meet the same failure and give up.",
            remediation=f"Ask the DNS provider of {host} why `dig {failed[0].rdtype} {host}` "
            "fails; a name server must answer every type, if only with no record.",
        )
    if literal:
        return Outcome(
            Status.PASS,
            f"SMTP host {host} is a public address",
            f"The SMTP host {host} is an IP address{note} the platform's servers can reach.",
        )
    return Outcome(
        Status.PASS,
        f"SMTP host {host} resolves to public addresses",
        f"{host} resolves to {_listing(public)}{note}; the platform's servers can reach "
        f"{'it' if len(public) == 1 else 'them'}.",
    )


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


@dataclass(frozen=True)
class _Issue:
    status: Status
    title: str
    remediation: str = ""
    cause: Cause | None = None


def _combine(issues: Sequence[_Issue], passed: str, detail: str) -> Outcome:
    if not issues:
        return Outcome(Status.PASS, passed, detail)
    worst = max(issues, key=lambda i: i.status)
    remediation = " ".join(dict.fromkeys(i.remediation for i in issues if i.remediation))
    return Outcome(worst.status, worst.title, detail, worst.cause, remediation)


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
            f", including mail the platform sends through {_listing([h.host for h in hosts])}"
            if hosts
            else ""
        )
        return Outcome(
            Status.WARN,
            f"No SPF record for {domain}",
            f"{found}. Receivers cannot tell which servers may send as {_listing(senders)} "
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
            "Terms with macros were not evaluated (maildiag does not expand SPF macros): "
            + ", ".join(walk.unevaluated)
        )
    if walk.result == "temperror":
        return Outcome(
            Status.ERROR,
            f"SPF record of {domain} could not be evaluated (temperror)",
            ". ".join([*parts, _sentence(walk.problem)]) + ".",
            Cause.DNS_FAILURE,
            f"Run the check again. If it fails again, the name in '{walk.problem}' does not "
            "answer: ask its DNS provider, or remove the term that needs it from the record.",
        )
    if walk.result == "permerror":
        if walk.limit_exceeded:
            top = sorted((i for i in walk.includes if i.depth == 0), key=lambda i: -i.lookups)
            costs = _listing([f"{i.term} ({i.lookups} lookups)" for i in top]) or "none"
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
            ". ".join([*parts, _sentence(walk.problem)]) + ". Receivers may reject candidate mail.",
            Cause.POLICY_REJECTED,
            remediation,
        )
    issues: list[_Issue] = []
    if walk.result == "pass":
        parts.append(
            f"The record authorises every address on the internet ({walk.matched} matches "
            f"{SPF_PROBE}, an address no server sends from)"
        )
        issues.append(
            _Issue(
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
                _Issue(
                    Status.FAIL,
                    f"SPF evaluation for {host.host} ends in permerror",
                    f"Correct the TXT record at {domain}: {problems[0]}.",
                    Cause.POLICY_REJECTED,
                )
            )
            continue
        if result == "temperror":
            issues.append(
                _Issue(
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
            _Issue(
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
        passed = f"SPF record of {domain} authorises {_listing([h.host for h in hosts])}"
    return _combine(issues, passed, ". ".join(parts) + ".")


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
    to = _listing(addresses)
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
    issues: list[_Issue] = []
    if record.p is None:
        issues.append(
            _Issue(
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
                    _Issue(
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
        return _combine(issues, title, ". ".join(parts) + ".")
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
            _Issue(
                Status.WARN,
                f"DMARC policy of {domain} is reject: redirected mail depends on DKIM",
                f"On the server that redirects {to} to {inbound_address}: redirect, do not "
                "forward: keep the original headers and body unchanged so DKIM survives; if "
                "your server rewrites the envelope sender (SRS), SPF alignment still fails but "
                "DKIM carries DMARC; enable ARC sealing if your server supports it (Microsoft "
                "365 does for trusted ARC sealers, Google Workspace seals).",
            )
        )
    return _combine(issues, f"DMARC policy of {domain} is {value}", ". ".join(parts) + ".")


# -- registered checks ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sender:
    subject: str
    custom_address: str | None
    smtp: SmtpSettings | None
    is_company: bool

    @property
    def domain(self) -> str | None:
        if self.custom_address is None:
            return None
        return self.custom_address.rsplit("@", 1)[1].lower()


def _senders(config: AccountConfig) -> list[_Sender]:
    company = config.company
    senders = [_Sender(company.name, company.custom_address, company.smtp, True)]
    senders += [_Sender(s.name, s.custom_address, s.smtp, False) for s in config.subcompanies]
    return senders


Evaluate = Callable[[str, list[_Sender]], Awaitable[tuple[Outcome, dict[str, Any]]]]


async def _per_group(
    context: Context,
    check_id: str,
    key: Callable[[_Sender], str | None],
    what: str,
    evaluate: Evaluate,
    missing: Callable[[_Sender], Finding],
) -> list[Finding]:
    """One finding per subject: ``evaluate`` runs once per distinct key (domain or host)."""
    senders = _senders(context.config)
    groups: dict[str, list[_Sender]] = {}
    for sender in senders:
        value = key(sender)
        if value is not None:
            groups.setdefault(value, []).append(sender)
    results = await asyncio.gather(*(evaluate(k, g) for k, g in groups.items()))
    health = await started_health(context)
    by_subject: dict[str, Finding] = {}
    for (value, group), (outcome, evidence) in zip(groups.items(), results, strict=True):
        queries = evidence.get("queries", ())
        unplayed = [q["query"].split()[0] for q in queries if q.get("unplayed")]
        if unplayed and outcome.status >= Status.WARN:
            outcome = unplayed_outcome(outcome, unplayed)
        evidence = {**evidence, "resolver": describe_resolver(context.resolver)}
        first, others = group[0], group[1:]
        detail = outcome.detail
        if others:
            names = _listing([o.subject for o in others])
            detail += f" The {what} {value} is also that of {names}: this finding covers them too."
        finding = Finding(
            check=check_id,
            status=outcome.status,
            subject=first.subject,
            title=outcome.title,
            detail=detail,
            evidence={**evidence, "subjects": [s.subject for s in group]},
            cause=outcome.cause,
            remediation=outcome.remediation,
        )
        if (
            health is not None
            and not health.works
            and outcome.status >= Status.WARN
            and any(q["kind"] in NEGATIVE for q in queries)
        ):
            finding = local_resolver_finding(finding, health)
        by_subject[first.subject] = finding
        for other in others:
            by_subject[other.subject] = Finding(
                check=check_id,
                status=Status.SKIP,
                subject=other.subject,
                title=f"Same {what} as {first.subject}",
                detail=f"The {what} {value} is checked once, in the {check_id} finding for "
                f"{first.subject}.",
                evidence={what.replace(" ", "_"): value},
            )
    return [by_subject.get(s.subject) or missing(s) for s in senders]


def _no_custom_address(check_id: str, context: Context) -> Callable[[_Sender], Finding]:
    config = context.config

    def finding(sender: _Sender) -> Finding:
        if sender.is_company:
            detail = (
                f"Nothing to look up: {sender.subject} has no custom address; candidates write "
                f"to and receive mail from the platform's address {config.inbound_address}."
            )
        else:
            detail = (
                f"Nothing to look up: {sender.subject} has no custom address of its own and "
                f"uses the settings of {config.company.name}, checked in their finding."
            )
        return Finding(
            check=check_id,
            status=Status.SKIP,
            subject=sender.subject,
            title="No custom address of its own",
            detail=detail,
        )

    return finding


def _no_smtp(sender: _Sender) -> Finding:
    return Finding(
        check="dns.smtp_host",
        status=Status.SKIP,
        subject=sender.subject,
        title="No SMTP settings of its own",
        detail="Nothing to resolve: this (sub)company has no SMTP settings; "
        "sender.resolution shows which route its mail takes.",
    )


def _addresses_of(group: Sequence[_Sender]) -> list[str]:
    return list(dict.fromkeys(s.custom_address for s in group if s.custom_address))


def _hosts_of(group: Sequence[_Sender]) -> list[str]:
    return list(dict.fromkeys(s.smtp.host for s in group if s.smtp is not None))


async def _resolve_host(queries: DNSQueries, host: str) -> tuple[tuple[str, ...], list[DNSAnswer]]:
    """The addresses of ``host`` (itself when it is an IP literal) and the answers behind them."""
    try:
        return (str(ipaddress.ip_address(host)),), []
    except ValueError:
        pass
    answers = list(await query_addresses(queries, host))
    return _addresses(answers), answers


async def _authorise(queries: DNSQueries, domain: str, host: str) -> HostAuthorisation:
    addresses, answers = await _resolve_host(queries, host)
    if not addresses:
        reason = _listing([a.describe() for a in answers])
        return HostAuthorisation(host, failure=f"it does not resolve: {reason}")
    evaluations = [
        await spf_records.check_host(address, domain, lookup=queries) for address in addresses
    ]
    return HostAuthorisation(host, tuple(evaluations))


@check("dns.mx", flow="inbound", title="MX records of the custom address's domain")
async def mx_records(context: Context) -> list[Finding]:
    profile = context.config.profile

    async def evaluate(domain: str, group: list[_Sender]) -> tuple[Outcome, dict[str, Any]]:
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
            recipients=_addresses_of(group),
            profile=profile,
        )
        evidence = {
            "domain": domain,
            "queries": queries.evidence(),
            "mx": [
                {
                    "preference": r.preference,
                    "host": r.host,
                    "addresses": list(_addresses(hosts.get(r.host, ()))),
                }
                for r in records
            ],
        }
        return outcome, evidence

    missing = _no_custom_address("dns.mx", context)
    return await _per_group(context, "dns.mx", lambda s: s.domain, "domain", evaluate, missing)


@check("dns.smtp_host", flow="outbound", title="SMTP host resolves to reachable addresses")
async def smtp_host(context: Context) -> list[Finding]:
    profile = context.config.profile

    async def evaluate(host: str, group: list[_Sender]) -> tuple[Outcome, dict[str, Any]]:
        queries = DNSQueries.of(context)
        addresses, answers = await _resolve_host(queries, host)
        smtp = group[0].smtp
        assert smtp is not None
        outcome = classify_smtp_host(
            host, addresses, answers, mode=context.mode, profile=profile, port=smtp.port
        )
        evidence = {
            "host": host,
            "queries": queries.evidence(),
            "addresses": [
                {"address": a, "unreachable": unreachable_reason(a, context.mode)}
                for a in addresses
            ],
            "mode": context.mode,
        }
        return outcome, evidence

    def host_of(sender: _Sender) -> str | None:
        return sender.smtp.host if sender.smtp is not None else None

    return await _per_group(context, "dns.smtp_host", host_of, "SMTP host", evaluate, _no_smtp)


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
    async def evaluate(domain: str, group: list[_Sender]) -> tuple[Outcome, dict[str, Any]]:
        queries = DNSQueries.of(context)
        txt = await queries(domain, "TXT")
        texts = [t for t in txt.records if spf_records.is_spf_record(t)]
        walk = None
        if len(texts) == 1:
            walk = await spf_records.check_host(SPF_PROBE, domain, lookup=queries, measure=True)
        if walk is not None and walk.result not in ("permerror", "temperror"):
            hosts = [await _authorise(queries, domain, h) for h in _hosts_of(group)]
        else:
            hosts = [HostAuthorisation(h, failure="not evaluated") for h in _hosts_of(group)]
        outcome = classify_spf(domain, txt, walk, hosts, senders=_addresses_of(group))
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

    missing = _no_custom_address("dns.spf", context)
    return await _per_group(context, "dns.spf", lambda s: s.domain, "domain", evaluate, missing)


@check("dns.dmarc", flow="inbound", title="DMARC policy of the custom address's domain")
async def dmarc_record(context: Context) -> list[Finding]:
    config = context.config

    async def evaluate(domain: str, group: list[_Sender]) -> tuple[Outcome, dict[str, Any]]:
        queries = DNSQueries.of(context)
        discovery = await dmarc_records.discover(domain, lookup=queries)
        domain_exists = True
        if discovery.inherited:
            domain_exists = (await queries(domain, "MX")).kind != "nxdomain"
        senders: list[SenderAlignment] = []
        if discovery.record is not None:
            for host in _hosts_of(group):
                authorisation = await _authorise(queries, domain, host)
                senders.append(SenderAlignment(host, authorisation.result))
        outcome = classify_dmarc(
            domain,
            discovery,
            domain_exists=domain_exists,
            senders=senders,
            addresses=_addresses_of(group),
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

    missing = _no_custom_address("dns.dmarc", context)
    return await _per_group(context, "dns.dmarc", lambda s: s.domain, "domain", evaluate, missing)
