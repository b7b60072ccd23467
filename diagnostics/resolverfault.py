"""Findings of a run whose own resolver does not work: said as such, never blamed on a name.

When the machine running the audit cannot resolve (no network, a resolver that answers
NXDOMAIN for everything, one that never answers), every finding that rests on DNS would
otherwise tell the customer to publish records that exist. :func:`local_resolver_finding`
turns such a finding into an ``error`` with cause ``local_resolver`` that names the resolver
and the way out (``--dns-server``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from diagnostics.findings import Cause, Finding, Status

if TYPE_CHECKING:
    from diagnostics.net.dns import ResolverHealth

__all__ = ["blames_dns", "local_resolver_finding"]


def blames_dns(finding: Finding) -> bool:
    """A finding of any family that puts a failure on DNS."""
    return finding.cause is Cause.DNS_FAILURE and finding.status > Status.PASS


def local_resolver_finding(finding: Finding, health: ResolverHealth) -> Finding:
    """``finding`` said as what it is: the audit's resolver failed, the check could not run."""
    return dataclasses.replace(
        finding,
        status=Status.ERROR,
        title=f"DNS does not work on the machine running the audit (resolver {health.resolver})",
        detail=(
            f"{health.problem}. It was asked for {health.probe.query}, a name that exists, "
            f"before anything was blamed on the account's names, and answered: "
            f"{health.probe.detail}. So this check could not run and says nothing about the "
            f"account's setup (it would have said: {finding.title})."
        ),
        evidence={
            **finding.evidence,
            "resolver_health": health.evidence(),
            # One cause and one fix for every finding it touches: the report shows it once.
            "root_cause": {"kind": "local_resolver", "resolver": health.resolver},
        },
        cause=Cause.LOCAL_RESOLVER,
        remediation=(
            "Fix DNS on the machine that runs maildiag (its network connection, or the name "
            "servers in /etc/resolv.conf), or run the audit again with --dns-server ADDRESS "
            "naming a resolver that works (your network's, or a public one such as 1.1.1.1)."
        ),
    )
