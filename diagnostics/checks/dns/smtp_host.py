"""The ``dns.smtp_host`` check: whether the platform can reach the SMTP host it sends through.

Pure tier: :func:`unreachable_reason` (the address rule: private, loopback, documentation
and other addresses the platform's servers cannot reach) and :func:`classify_smtp_host`.
The registered check :func:`smtp_host` resolves each distinct SMTP host once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any, Final

from diagnostics.checks.dns.shared import Sender, listing, per_group, resolve_host
from diagnostics.context import Context, Mode
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.net.dns import DNSAnswer, DNSQueries
from diagnostics.profiles import PlatformProfile
from diagnostics.registry import check

__all__ = ["classify_smtp_host", "smtp_host", "unreachable_reason"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
    egress = listing([str(n) for n in profile.egress_ips])
    if not addresses:
        failed = [a for a in answers if a.failed]
        problems = listing([a.describe() for a in answers])
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
            listed = listing([f"{a} ({r})" for a, r in private])
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
        listed = listing([f"{a} ({r})" for a, r in private])
        return Outcome(
            Status.WARN,
            f"SMTP host {host} resolves to public and unreachable addresses",
            f"{host} resolves to {listing(public)}{note} and to {listed}; the platform's "
            "connection fails whenever it picks an unreachable address.",
            remediation=f"Remove the records for {listing([a for a, _ in private])} of "
            f"{host} from public DNS (keep them in your internal DNS if you need them), so "
            f"that the platform only finds {listing(public)}.",
        )
    if failed:
        return Outcome(
            Status.WARN,
            f"SMTP host {host} resolves, but not every query was answered",
            f"{host} resolves to {listing(public)}{note}. "
            f"{listing([a.describe() for a in failed])}; "
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
        f"{host} resolves to {listing(public)}{note}; the platform's servers can reach "
        f"{'it' if len(public) == 1 else 'them'}.",
    )


def _no_smtp(sender: Sender) -> Finding:
    return Finding(
        check="dns.smtp_host",
        status=Status.SKIP,
        subject=sender.subject,
        title="No SMTP settings of its own",
        detail="Nothing to resolve: this (sub)company has no SMTP settings; "
        "sender.resolution shows which route its mail takes.",
    )


@check("dns.smtp_host", flow="outbound", title="SMTP host resolves to reachable addresses")
async def smtp_host(context: Context) -> list[Finding]:
    profile = context.config.profile

    async def evaluate(host: str, group: list[Sender]) -> tuple[Outcome, dict[str, Any]]:
        queries = DNSQueries.of(context)
        addresses, answers = await resolve_host(queries, host)
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

    def host_of(sender: Sender) -> str | None:
        return sender.smtp.host if sender.smtp is not None else None

    return await per_group(context, "dns.smtp_host", host_of, "SMTP host", evaluate, _no_smtp)
