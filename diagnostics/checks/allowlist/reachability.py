"""The check ``allowlist.reachability``: does the company's SMTP server admit a connection
from every egress IP of the platform?

The connections are made by :mod:`diagnostics.smtpgreeting` (one greeting probe per egress
IP and server address; the sandbox plays the egress IPs, a live run cannot and skips);
:func:`classify_reachability` turns their results into an outcome and the egress IPs the
server must still permit, and the check notes refused IPs that the documented allowlist lists.
It gives one finding per company or subcompany and never raises for a failure it expects.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from diagnostics.checks.allowlist.coverage import READY_TO_PASTE, documented_allowlist, no_smtp
from diagnostics.config import AccountConfig, Company, SmtpSettings, Subcompany
from diagnostics.context import Context
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.netblocks import compare_allowlist, listing
from diagnostics.profiles import PlatformProfile
from diagnostics.registry import check
from diagnostics.report.snippets import classify_server_family, render_snippets
from diagnostics.smtpgreeting import Admission, ProbeResult, ServerProbe, probe_server
from diagnostics.unplayed import refused as dns_refused
from diagnostics.unplayed import unplayed_outcome

# How the platform's attempt from a refused egress IP ends, in order of precedence when the
# IPs fail in different ways (a refusal in words says the most).
_CAUSE = {
    Admission.REJECTED: Cause.CLIENT_IP_REJECTED,
    Admission.CLOSED: Cause.CLIENT_IP_REJECTED,
    Admission.NO_GREETING: Cause.CONNECTION_TIMEOUT,
    Admission.CONNECT_TIMEOUT: Cause.CONNECTION_TIMEOUT,
    Admission.REFUSED: Cause.CONNECTION_REFUSED,
    # Packets to an address nobody routes go unanswered: the platform sees a timeout.
    Admission.UNREACHABLE: Cause.CONNECTION_TIMEOUT,
    Admission.DEFERRED: Cause.TEMPORARY_FAILURE,
    Admission.GARBLED: Cause.UNKNOWN,
}
# A server that hangs up on everyone is not picking clients by address: closing before a
# byte refuses as a reset does, while half a greeting and then a close breaks the protocol.
_UNIFORM_CAUSE = {**_CAUSE, Admission.CLOSED: Cause.CONNECTION_REFUSED}


def _uniform_cause(admission: Admission, failed: Sequence[ProbeResult]) -> Cause:
    """The cause when every connection ended the same way (``admission``)."""
    if admission is Admission.CLOSED and any(r.reply for r in failed):
        return Cause.UNKNOWN
    return _UNIFORM_CAUSE[admission]


def _by_ip(results: Sequence[ProbeResult]) -> dict[str, list[ProbeResult]]:
    grouped: dict[str, list[ProbeResult]] = {}
    for result in results:
        grouped.setdefault(result.egress_ip, []).append(result)
    return grouped


def _not_the_allowlist(admission: Admission, server: str, port: int, path: str) -> tuple[str, str]:
    """Why a failure shared by every egress IP points elsewhere, and what to do about it."""
    if admission is Admission.UNREACHABLE:
        return (
            "The platform cannot reach the server at all, whatever the allowlist says.",
            f"Host in {path} must name a server the platform can reach from the internet; "
            f"dns.smtp_host shows the addresses {server} resolves to.",
        )
    if admission is Admission.GARBLED:
        return (
            f"Port {port} answers, but not in SMTP.",
            f"Check Port and Encryption in {path}: port {port} does not speak SMTP.",
        )
    if admission is Admission.DEFERRED:
        return (
            "The server defers every client alike.",
            "Try again later, and ask the server's administrator why it answers every client "
            "with a 4xx greeting.",
        )
    probable = (
        "That points at the server or the settings rather than the allowlist: the host is "
        f"down, nothing serves port {port}, or a firewall closes it for every client."
    )
    if admission in (Admission.NO_GREETING, Admission.CONNECT_TIMEOUT):
        return probable, (
            f"Check that {server} is up and serves SMTP on port {port} (smtp.connect shows the "
            f"same from here) and that Host, Port and Encryption in {path} are right; a "
            f"firewall that silently drops port {port} for every client has the same effect."
        )
    return probable, (
        f"Nothing accepts SMTP connections on {server} port {port}: check that the mail server "
        f"runs and listens on that port, and that Host and Port in {path} are right."
    )


@dataclass(frozen=True)
class ReachabilityVerdict:
    """The outcome of the connections, and the egress IPs the server must still permit."""

    outcome: Outcome
    refused: tuple[str, ...] = ()


def classify_reachability(
    results: Sequence[ProbeResult], *, server: str, port: int, profile: PlatformProfile
) -> ReachabilityVerdict:
    """Whether every egress IP was greeted, from one :class:`ProbeResult` per IP and address.

    An egress IP fails when any of the server's addresses failed it. A TLS failure is not
    the allowlist's doing (``warn``, pointing to smtp.tls). When every IP failed the same way
    and none was greeted, the server or the settings are the likelier culprit: the cause
    says how the connections ended, and ``refused`` stays empty.
    """
    platform = profile.display_name
    ui = profile.ui
    at = f"{server} port {port}"
    grouped = _by_ip(results)
    if not grouped:
        return ReachabilityVerdict(Outcome(Status.SKIP, "No egress IP to connect from"))
    multi = len({r.address for r in results}) > 1

    def failure(result: ProbeResult) -> str:
        via = f" (address {result.address})" if multi else ""
        return f"{result.egress_ip}{via}: {result.describe()}"

    greeted = [
        ip for ip, rs in grouped.items() if all(r.admission is Admission.ACCEPTED for r in rs)
    ]
    failed = [r for r in results if r.admission is not Admission.ACCEPTED]
    allowlist_failures = [r for r in failed if r.admission is not Admission.TLS_FAILED]
    refused_ips = tuple(dict.fromkeys(r.egress_ip for r in allowlist_failures))
    # Without the port: one fix on the server admits the egress IPs on each of its ports, so
    # the findings of several ports share it (the snippets carry the port).
    permit = (
        f"Permit {', '.join(refused_ips)} on {server} in the server's allowlist or firewall, "
        f"then press '{ui.test_connection}' in {ui.settings_path} to confirm that {platform} "
        f"gets through. {READY_TO_PASTE}."
    )
    if not failed:
        return ReachabilityVerdict(
            Outcome(
                Status.PASS,
                f"{at} greets all {len(grouped)} {platform} egress IPs",
                f"Connected from {', '.join(grouped)}: each was greeted with '{results[0].reply}'.",
            )
        )
    if not allowlist_failures:
        tls_ips = list(dict.fromkeys(r.egress_ip for r in failed))
        return ReachabilityVerdict(
            Outcome(
                Status.WARN,
                f"{at}: TLS failed, so its allowlist cannot be seen",
                f"The TLS handshake failed from {', '.join(tls_ips)} before the server's "
                f"greeting ({failed[0].error}), so whether the server admits those egress IPs "
                "cannot be seen. That is not an allowlist problem: smtp.tls reports it.",
                remediation="Fix the TLS problem smtp.tls reports (certificate, or Encryption "
                f"and Port in {ui.settings_path}), then run the audit again.",
            )
        )
    kinds = {r.admission for r in failed}
    refusals = "; ".join(failure(r) for r in failed)
    if not greeted and len(kinds) == 1 and len(failed) == len(results):
        kind = failed[0].admission
        if kind is not Admission.REJECTED:
            why, remedy = _not_the_allowlist(kind, server, port, ui.settings_path)
            return ReachabilityVerdict(
                Outcome(
                    Status.FAIL,
                    f"{at} answers none of the {platform} egress IPs",
                    f"All {len(grouped)} egress IPs failed the same way: "
                    f"{failed[0].describe()}. {why}",
                    _uniform_cause(kind, failed),
                    remedy,
                )
            )
        return ReachabilityVerdict(
            Outcome(
                Status.FAIL,
                f"{at} rejects every {platform} egress IP",
                f"All {len(grouped)} egress IPs were {failed[0].describe()}: none of them "
                "is on the server's allowlist, or the server refuses every client.",
                Cause.CLIENT_IP_REJECTED,
                permit,
            ),
            refused_ips,
        )
    cause = next(_CAUSE[kind] for kind in _CAUSE if kind in kinds)
    return ReachabilityVerdict(
        Outcome(
            Status.FAIL,
            f"{at} refuses {len(refused_ips)} of {len(grouped)} {platform} egress IPs",
            f"Refused: {refusals}. Greeted: {', '.join(greeted) or 'none'}. {platform} sends "
            f"from any of its egress IPs, so '{ui.test_connection}' and candidate mail fail "
            f"whenever it connects from {', '.join(refused_ips)}.",
            cause,
            permit,
        ),
        refused_ips,
    )


def _live_skip(smtp: SmtpSettings, profile: PlatformProfile) -> Outcome:
    ui = profile.ui
    ips = listing(profile.egress_ips)
    return Outcome(
        Status.SKIP,
        f"Cannot connect from {profile.display_name}'s egress IPs from here",
        f"This run connects from this machine, not from {profile.display_name}'s egress IPs "
        f"({ips}), so it cannot see whether {smtp.host} port {smtp.port} admits them (the "
        "sandbox plays them). Verify it by hand: ask the administrator of the server or its "
        f"firewall whether {ips} may connect to port {smtp.port}, or press "
        f"'{ui.test_connection}' in {ui.settings_path}: 'Client host rejected' or a timeout "
        "there points at the allowlist.",
    )


def _dns_failure(smtp: SmtpSettings, error: str, profile: PlatformProfile) -> Outcome:
    return Outcome(
        Status.FAIL,
        f"{smtp.host} does not resolve",
        f"{error}. There is no address to connect to from the egress IPs; dns.smtp_host has "
        "the details.",
        Cause.DNS_FAILURE,
        f"Publish an A record for {smtp.host}, or correct Host in {profile.ui.settings_path}.",
    )


def _against_documented(
    verdict: ReachabilityVerdict, identity: Company | Subcompany, config: AccountConfig
) -> Outcome:
    """The outcome, noting refused egress IPs that the account file says are permitted."""
    allowlist, owner = documented_allowlist(identity, config.company)
    if not verdict.refused or allowlist is None:
        return verdict.outcome
    refused = [ipaddress.ip_network(ip) for ip in verdict.refused]
    listed = compare_allowlist(allowlist, refused).covered
    if not listed:
        return verdict.outcome
    note = (
        f" The allowlist documented for {owner} lists {listing(listed)}: the account file "
        "and the server disagree."
    )
    return replace(verdict.outcome, detail=verdict.outcome.detail + note)


@check(
    "allowlist.reachability",
    flow="outbound",
    title="SMTP server admits every platform egress IP",
)
async def reachability(context: Context) -> list[Finding]:
    config = context.config
    profile = config.profile
    egress = [str(n.network_address) for n in profile.egress_ips]
    sources = {ip: context.egress_sources[ip] for ip in egress if ip in context.egress_sources}
    servers: dict[tuple[str, int, str], SmtpSettings] = {}
    for settings in (identity.smtp for identity in config.identities()):
        if settings is not None:
            servers.setdefault((settings.host, settings.port, settings.encryption), settings)
    probes: dict[tuple[str, int, str], ServerProbe] = {}
    if sources:
        done = await asyncio.gather(
            *(probe_server(s, context=context, egress_sources=sources) for s in servers.values())
        )
        probes = dict(zip(servers, done, strict=True))
    findings = []
    for identity in config.identities():
        smtp = identity.smtp
        if smtp is None:
            findings.append(no_smtp("allowlist.reachability", identity, config))
            continue
        evidence: dict[str, Any] = {
            "smtp_host": smtp.host,
            "port": smtp.port,
            "encryption": smtp.encryption,
            "egress_ips": egress,
        }
        probe = probes.get((smtp.host, smtp.port, smtp.encryption))
        if probe is None:
            outcome = _live_skip(smtp, profile)
        elif probe.dns_error:
            outcome = _dns_failure(smtp, probe.dns_error, profile)
            if context.mode == "sandbox" and dns_refused(probe.dns_error):
                outcome = unplayed_outcome(outcome, [smtp.host])
        else:
            verdict = classify_reachability(
                probe.results, server=smtp.host, port=smtp.port, profile=profile
            )
            outcome = _against_documented(verdict, identity, config)
            refused = [n for n in profile.egress_ips if str(n.network_address) in verdict.refused]
            family = classify_server_family(
                (r.reply for r in probe.results if r.admission is Admission.ACCEPTED),
                host=smtp.host,
            )
            evidence |= {
                "addresses": list(probe.addresses),
                "probes": [r.row() for r in probe.results],
                "server_family": family,
                "snippets": render_snippets(refused, port=smtp.port, server_family=family),
            }
            probed_by = {r.egress_ip: r.probed_by for r in probe.results if r.probed_by}
            if probed_by:
                # Made by the machines that own those egress IPs (a batch on a cluster).
                evidence["probed_by"] = probed_by
            if verdict.refused:
                # One fix however many ports and subcompanies show it: permit these egress
                # IPs on this host.
                evidence["root_cause"] = {
                    "kind": "egress_ips_refused",
                    "smtp_host": smtp.host,
                    "egress_ips": list(verdict.refused),
                }
        findings.append(outcome.finding("allowlist.reachability", identity.name, evidence))
    return findings
