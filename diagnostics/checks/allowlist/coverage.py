"""The check ``allowlist.coverage``: does the allowlist documented in the account file cover the
platform's egress IPs?

:func:`classify_coverage` turns the CIDR comparison of :mod:`diagnostics.netblocks` into an
outcome and the networks the snippets must permit; :func:`documented_allowlist` says whose
allowlist applies (a subcompany inherits its parent's on the same SMTP host). Also used by
``allowlist.reachability``: :data:`READY_TO_PASTE`, :func:`documented_allowlist` and
:func:`no_smtp`. The check gives one finding per company or subcompany.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from diagnostics.config import AccountConfig, Company, Subcompany
from diagnostics.context import Context
from diagnostics.findings import Cause, Finding, Outcome, Status
from diagnostics.netblocks import Coverage, compact, compare_allowlist, listing
from diagnostics.profiles import IPNetwork
from diagnostics.registry import check
from diagnostics.report.snippets import render_snippets

# Where the remediations send the reader for the snippets: the reports' section and the
# finding's evidence, never a file name (the reader may be reading that very file).
READY_TO_PASTE = (
    "Ready-to-paste lines are under 'Settings to copy' in the report and in this finding's "
    "evidence ('snippets')"
)


@dataclass(frozen=True)
class CoverageVerdict:
    """The outcome of a coverage comparison, and the networks the snippets must permit."""

    outcome: Outcome
    coverage: Coverage | None
    snippet_networks: tuple[IPNetwork, ...]


def _size(network: IPNetwork) -> str:
    if network.prefixlen == 0:
        return "every address on the internet"
    if network.version == 4:
        return f"{network.num_addresses:,} addresses"
    return f"2^{128 - network.prefixlen} addresses"


def _them(networks: Sequence[IPNetwork]) -> str:
    return "it" if len(networks) == 1 else "them"


def classify_coverage(
    allowlist: Sequence[IPNetwork] | None,
    egress_ips: Sequence[IPNetwork],
    *,
    platform: str,
    where: str,
    server: str,
) -> CoverageVerdict:
    """Whether ``allowlist`` (None: none documented) covers every egress network.

    ``platform`` is the platform's display name, ``where`` names the allowlist at the start
    of a sentence ("The allowlist documented for Acme GmbH"), ``server`` the host it guards
    (the remediation names no port: one fix on the server admits the egress IPs on each).
    """
    egress = tuple(egress_ips)
    if allowlist is None:
        return CoverageVerdict(
            Outcome(
                Status.SKIP,
                "No allowlist documented",
                "No allowlist documented; if your server restricts clients by IP, it must "
                f"permit: {listing(egress)} ({platform}'s egress IPs). {READY_TO_PASTE}.",
                remediation=f"If {server} or its firewall restricts clients by IP, document "
                f"what it permits as allowlist: [...] in the account file, so that the audit "
                "can compare it.",
            ),
            None,
            egress,
        )
    coverage = compare_allowlist(allowlist, egress)
    notes = ""
    if coverage.broader:
        notes += (
            f" {listing(coverage.broader)} admit more addresses than {platform} needs "
            "(each holds an egress IP and more besides)."
        )
    if coverage.extra:
        notes += (
            f" Entries that hold no {platform} egress IP (your other clients; the platform "
            f"does not need them): {listing(coverage.extra)}."
        )
    wide = ", ".join(f"{compact(n)} ({_size(n)})" for n in coverage.too_broad)
    if coverage.missing:
        detail = (
            f"{where} does not permit {listing(coverage.missing)}; the "
            f"platform's connections from {_them(coverage.missing)} are refused (its "
            "'Test connection' fails with 'Client host rejected' or a timeout whenever it "
            "connects from there)."
        )
        if coverage.covered:
            detail += f" It permits {listing(coverage.covered)}."
        if wide:
            detail += f" It also admits {wide}."
        return CoverageVerdict(
            Outcome(
                Status.FAIL,
                f"Allowlist lacks {len(coverage.missing)} of {len(egress)} {platform} egress IPs",
                detail + notes,
                Cause.CLIENT_IP_REJECTED,
                f"Permit {listing(coverage.missing)} on {server} (the server's allowlist or "
                f"its firewall): {READY_TO_PASTE[0].lower()}{READY_TO_PASTE[1:]}. Then add "
                f"{_them(coverage.missing)} to the allowlist in the account file and run the "
                "audit again.",
            ),
            coverage,
            coverage.missing,
        )
    if coverage.too_broad:
        return CoverageVerdict(
            Outcome(
                Status.WARN,
                f"Allowlist admits far more than the {platform} egress IPs",
                f"{where} permits every {platform} egress IP, but "
                f"{wide}: for clients from there the allowlist protects nothing, and only the "
                "account's password stands between them and sending through your server." + notes,
                remediation=f"Replace {listing(coverage.too_broad)} with {platform}'s egress "
                f"IPs ({listing(egress)}) and the networks of your own clients; "
                f"{READY_TO_PASTE[0].lower()}{READY_TO_PASTE[1:]}.",
            ),
            coverage,
            egress,
        )
    return CoverageVerdict(
        Outcome(
            Status.PASS,
            f"Allowlist covers every {platform} egress IP",
            f"{where} permits all {len(egress)} egress IPs of {platform} "
            f"({listing(egress)})." + notes,
        ),
        coverage,
        (),
    )


def documented_allowlist(
    identity: Company | Subcompany, parent: Company
) -> tuple[tuple[IPNetwork, ...] | None, str | None]:
    """The allowlist documented for ``identity`` and whose it is.

    A subcompany without one of its own inherits the parent's when both send through the
    same SMTP host. (None, None) when none is documented.
    """
    if identity.allowlist is not None:
        return identity.allowlist, identity.name
    if (
        identity is not parent
        and identity.smtp is not None
        and parent.smtp is not None
        and identity.smtp.host == parent.smtp.host
        and parent.allowlist is not None
    ):
        return parent.allowlist, parent.name
    return None, None


def no_smtp(check_id: str, identity: Company | Subcompany, config: AccountConfig) -> Finding:
    """The ``skip`` finding of ``check_id`` for an identity without SMTP settings of its own."""
    parent = config.company
    if identity is not parent and parent.smtp is not None:
        detail = (
            f"{identity.name} has no SMTP settings of its own: its mail goes out through "
            f"{parent.name}'s settings, which the finding for {parent.name} covers."
        )
    else:
        detail = (
            f"{identity.name} has no SMTP settings: the platform sends from its own address "
            f"({config.inbound_address}) through its own servers, so no allowlist of yours "
            "is involved."
        )
    return Finding(
        check=check_id,
        status=Status.SKIP,
        subject=identity.name,
        title="No SMTP settings of its own",
        detail=detail,
    )


def _cidrs(networks: Iterable[IPNetwork]) -> list[str]:
    return [str(n) for n in networks]


@check(
    "allowlist.coverage",
    flow="outbound",
    title="Documented allowlist covers the platform's egress IPs",
)
async def coverage(context: Context) -> list[Finding]:
    config = context.config
    profile = config.profile
    findings = []
    for identity in config.identities():
        smtp = identity.smtp
        if smtp is None:
            findings.append(no_smtp("allowlist.coverage", identity, config))
            continue
        allowlist, owner = documented_allowlist(identity, config.company)
        if owner is None or owner == identity.name:
            where = f"The allowlist documented for {identity.name}"
        else:
            where = (
                f"The allowlist documented for {owner} (inherited: {identity.name} has none of "
                f"its own and uses the same SMTP host, {smtp.host})"
            )
        verdict = classify_coverage(
            allowlist,
            profile.egress_ips,
            platform=profile.display_name,
            where=where,
            server=smtp.host,
        )
        evidence: dict[str, Any] = {
            "smtp_host": smtp.host,
            "port": smtp.port,
            "allowlist": None if allowlist is None else _cidrs(allowlist),
            "allowlist_of": owner,
            "egress_ips": _cidrs(profile.egress_ips),
        }
        if verdict.coverage is not None:
            evidence |= {
                "missing": _cidrs(verdict.coverage.missing),
                "covered": _cidrs(verdict.coverage.covered),
                "extra": _cidrs(verdict.coverage.extra),
                "broader": _cidrs(verdict.coverage.broader),
                "too_broad": _cidrs(verdict.coverage.too_broad),
            }
            if verdict.coverage.missing:
                # One fix however many ports and subcompanies show it: permit these networks on
                # this host, and document them in this allowlist of the account file.
                evidence["root_cause"] = {
                    "kind": "allowlist_lacks_egress_ips",
                    "smtp_host": smtp.host,
                    "egress_ips": _cidrs(verdict.coverage.missing),
                    "allowlist_of": owner,
                }
        evidence["snippets"] = render_snippets(verdict.snippet_networks, port=smtp.port)
        findings.append(verdict.outcome.finding("allowlist.coverage", identity.name, evidence))
    return findings
