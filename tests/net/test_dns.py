"""The one DNS query function and the run's resolver health, against loopback DNS servers:
a resolver that answers NXDOMAIN for everything, one that never answers, one that cannot be
reached, and a healthy one that still lets a customer's missing name be said."""

from __future__ import annotations

import errno
import logging
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import dns.asyncresolver
import dns.message
import dns.resolver
import pytest

from diagnostics.config import AccountConfig, parse_config
from diagnostics.context import Context, Timeouts
from diagnostics.findings import Cause, Finding, Status
from diagnostics.net import query_dns, resolver_health
from diagnostics.registry import run_checks, select
from diagnostics.sandbox.dns import SandboxDNS, ZoneRecord

ENVIRON = {"ACME_SMTP_PASSWORD": "Dns-Health-Pw-3318"}
ZONES = {
    "acme.example": [
        ZoneRecord("@", "MX", "10 mx.acme.example."),
        ZoneRecord("mx", "A", "198.51.100.10"),
        ZoneRecord("smtp", "A", "198.51.100.20"),
        ZoneRecord("@", "TXT", '"v=spf1 mx a:smtp.acme.example -all"'),
        ZoneRecord("_dmarc", "TXT", '"v=DMARC1; p=none"'),
    ],
    # The platform's own inbound domain: the name the health probe asks for.
    "m.personio.de": [
        ZoneRecord("@", "MX", "10 mx.m.personio.de."),
        ZoneRecord("mx", "A", "192.0.2.25"),
    ],
}
DNS_CHECKS = ["dns.mx", "dns.smtp_host", "dns.spf", "dns.dmarc"]
PROBE = ("m.personio.de.", "MX")


def config(address: str = "jobs@acme.example") -> AccountConfig:
    text = (
        "platform: {profile: personio, account: acme}\n"
        "company:\n"
        "  name: Acme GmbH\n"
        f"  custom_address: {address}\n"
        "  smtp: {host: smtp.acme.example, port: 587, encryption: starttls, "
        "account: jobs@acme.example, password: '${ACME_SMTP_PASSWORD}'}\n"
    )
    return parse_config(text, source="acme.yaml", environ=ENVIRON)


@asynccontextmanager
async def live_run(
    faults: Mapping[str, str] | None = None,
    *,
    timeout: float = 1.0,
    account: AccountConfig | None = None,
) -> AsyncIterator[tuple[Context, SandboxDNS]]:
    """A live-mode context whose named resolver (``--dns-server``) is a loopback server."""
    async with SandboxDNS(ZONES, faults=faults) as server:
        yield (
            Context(
                config=account or config(),
                resolver=server.resolver(timeout=timeout),
                trust=ssl.create_default_context(),
                dns_server=f"127.0.0.1:{server.port}",
                timeouts=Timeouts(dns=timeout, connect=1, banner=1, command=1, check=30),
            ),
            server,
        )


def summary(findings: list[Finding]) -> list[tuple[str, Status, Cause | None]]:
    return [(f.check, f.status, f.cause) for f in findings]


# -- the error model --------------------------------------------------------------------------


async def test_a_resolver_that_cannot_be_reached_is_unreachable() -> None:
    request = dns.message.make_query("acme.example.", "MX")
    failure = OSError(errno.ENETUNREACH, "Network is unreachable")
    error = dns.resolver.NoNameservers(
        request=request, errors=[("192.0.2.53", False, 53, failure, None)]
    )

    class Unreachable(dns.asyncresolver.Resolver):
        async def resolve(self, *args: object, **kwargs: object) -> dns.resolver.Answer:
            raise error

    resolver = Unreachable(configure=False)
    resolver.nameservers = ["192.0.2.53"]
    answer = await query_dns(resolver, "acme.example", "MX", lifetime=1)
    assert (answer.kind, answer.detail, answer.resolver) == (
        "unreachable",
        "the DNS server cannot be reached from this machine (Network is unreachable)",
        "192.0.2.53",
    )
    assert answer.failed


async def test_an_answer_names_the_server_that_gave_it() -> None:
    async with SandboxDNS(ZONES) as server:
        answer = await query_dns(server.resolver(), "acme.example", "MX", lifetime=1)
    assert (answer.kind, answer.records) == ("answer", ("10 mx.acme.example.",))
    assert answer.resolver == f"127.0.0.1:{server.port}"


# -- resolver health --------------------------------------------------------------------------


async def test_a_healthy_resolver_still_lets_a_missing_name_be_blamed() -> None:
    async with live_run(account=config("jobs@gone.acme.example")) as (context, server):
        findings = await run_checks(context, select(["dns.mx"]))
        health = await resolver_health(context)
    assert health.works
    assert summary(findings) == [("dns.mx", Status.FAIL, Cause.DNS_FAILURE)]
    assert findings[0].title == "gone.acme.example does not exist in DNS"
    assert findings[0].evidence["resolver"] == f"127.0.0.1:{server.port}"


async def test_a_resolver_that_says_nxdomain_for_everything_is_not_the_customers_fault() -> None:
    async with live_run({"*": "nxdomain"}) as (context, server):
        findings = await run_checks(context, select(DNS_CHECKS))
        asked = [q[:2] for q in server.queries]
    resolver = f"127.0.0.1:{server.port}"
    assert summary(findings) == [
        ("dns.mx", Status.ERROR, Cause.LOCAL_RESOLVER),
        ("dns.smtp_host", Status.ERROR, Cause.LOCAL_RESOLVER),
        ("dns.spf", Status.ERROR, Cause.LOCAL_RESOLVER),
        ("dns.dmarc", Status.ERROR, Cause.LOCAL_RESOLVER),
    ]
    mx = findings[0]
    assert mx.title == (f"DNS does not work on the machine running the audit (resolver {resolver})")
    assert mx.detail.startswith(
        f"The DNS resolver {resolver} says that m.personio.de, which exists, does not exist "
        "(NXDOMAIN): it answers NXDOMAIN for names that exist. It was asked for m.personio.de "
        "MX, a name that exists, before anything was blamed on the account's names"
    )
    assert mx.detail.endswith("(it would have said: acme.example does not exist in DNS).")
    assert "--dns-server" in mx.remediation
    assert mx.evidence["resolver_health"]["works"] is False
    for finding in findings:
        assert "publish" not in finding.remediation.lower()
        assert "DNS provider" not in finding.remediation
    # The resolver was probed once for the whole run.
    assert asked.count(PROBE) == 1
    # The report shows one problem to fix, not one per check and subject.
    from diagnostics.report.grouping import group_by_root_cause

    (problem,) = group_by_root_cause(findings)
    assert len(problem.findings) == len(findings)
    assert problem.title == mx.title and problem.remediation == mx.remediation


async def test_a_resolver_that_never_answers_costs_one_timeout_for_the_whole_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeout = 1.0
    async with live_run(timeout=timeout) as (context, _):
        started = time.perf_counter()
        await run_checks(context, select(DNS_CHECKS))
        healthy = time.perf_counter() - started
    with caplog.at_level(logging.WARNING, logger="diagnostics.net"):
        async with live_run({"*": "timeout"}, timeout=timeout) as (context, server):
            started = time.perf_counter()
            findings = await run_checks(context, select(DNS_CHECKS))
            broken = time.perf_counter() - started
            questions = {q[:2] for q in server.queries}
    assert summary(findings) == [
        ("dns.mx", Status.ERROR, Cause.LOCAL_RESOLVER),
        ("dns.smtp_host", Status.ERROR, Cause.LOCAL_RESOLVER),
        ("dns.spf", Status.ERROR, Cause.LOCAL_RESOLVER),
        ("dns.dmarc", Status.ERROR, Cause.LOCAL_RESOLVER),
    ]
    assert findings[0].detail.startswith(
        f"The DNS resolver 127.0.0.1:{context.resolver.port} did not answer a query for "
        "m.personio.de in time."
    )
    # Only the first query of each check and the probe waited; every later one was answered
    # from the verdict without asking (the SPF walk, DMARC's organisational domain, ...).
    assert questions == {
        PROBE,
        ("acme.example.", "MX"),
        ("smtp.acme.example.", "A"),
        ("smtp.acme.example.", "AAAA"),
        ("acme.example.", "TXT"),
        ("_dmarc.acme.example.", "TXT"),
    }
    # One timeout, however many checks waited on the resolver (a generous bound: well
    # below the two timeouts a second wave of queries would cost).
    assert broken < healthy + 1.8 * timeout
    waiting = [r.getMessage() for r in caplog.records if "waiting up to" in r.getMessage()]
    assert waiting == [
        f"maildiag: waiting up to 1 s for the DNS resolver 127.0.0.1:{context.resolver.port} "
        "to answer for m.personio.de"
    ]


async def test_a_broken_resolver_is_not_blamed_on_the_smtp_host_either() -> None:
    async with live_run({"*": "nxdomain"}) as (context, _):
        findings = await run_checks(context, select(["smtp.connect"]))
    assert summary(findings) == [("smtp.connect", Status.ERROR, Cause.LOCAL_RESOLVER)]
    assert "smtp.acme.example" in findings[0].detail
    assert "does not resolve" in findings[0].detail
