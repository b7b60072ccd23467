"""Tests for the DNS checks over a real SandboxDNS on loopback: dns.mx, dns.smtp_host,
dns.spf and dns.dmarc, plus the query layer and the address rule they rest on."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from diagnostics.checks.dns.dmarc import dmarc_record
from diagnostics.checks.dns.mx import mx_records
from diagnostics.checks.dns.smtp_host import smtp_host, unreachable_reason
from diagnostics.checks.dns.spf import spf_record
from diagnostics.config import AccountConfig, parse_config
from diagnostics.context import Context, Mode
from diagnostics.findings import Cause, Finding, Status
from diagnostics.net import DNSAnswer, query_dns
from diagnostics.registry import all_checks, run_checks, select
from diagnostics.sandbox.dns import SandboxDNS, ZoneRecord
from diagnostics.sandbox.scenariofile import load_scenario

ACME = Path(__file__).resolve().parents[2] / "fixtures" / "configs" / "acme.yaml"
ENVIRON = {
    "ACME_SMTP_PASSWORD": "Dns-Checks-Pw-4471",
    "ACME_RETAIL_SMTP_PASSWORD": "Dns-Checks-Retail-Pw-8812",
}
TRUST = ssl.create_default_context()
SETTINGS_PATH = "Settings > Recruiting > Recruiting > General > Recruiting email settings"
SMTP_PATH = f"{SETTINGS_PATH} > Use custom email address? Yes > use for sending emails? Yes"
EGRESS = "3.121.59.239/32, 3.65.146.216/32 and 18.158.122.164/32"

# A working zone; each test replaces what it is about.
MX = "@ MX 10 mx.acme.example."
MX_A = "mx A 198.51.100.10"
SMTP_A = "smtp A 198.51.100.20"
SPF = '@ TXT "v=spf1 mx a:smtp.acme.example -all"'
DMARC = '_dmarc TXT "v=DMARC1; p=none"'
BASE = (MX, MX_A, SMTP_A, SPF, DMARC)

Summary = list[tuple[str, str, Status, Cause | None]]


def account(
    address: str = "jobs@acme.example", host: str = "smtp.acme.example", extra: str = ""
) -> AccountConfig:
    text = (
        "platform: {profile: personio, account: acme}\n"
        "company:\n"
        "  name: Acme GmbH\n"
        f"  custom_address: {address}\n"
        f"  smtp: {{host: '{host}', port: 587, encryption: starttls, account: {address}, "
        "password: '${ACME_SMTP_PASSWORD}'}\n"
        f"{extra}"
    )
    return parse_config(text, source="x.yaml", environ=ENVIRON)


def zone_record(line: str) -> ZoneRecord:
    name, rtype, value = line.split(maxsplit=2)
    return ZoneRecord(name, rtype, value)


def zones(*records: str) -> dict[str, list[ZoneRecord]]:
    return {"acme.example": [zone_record(r) for r in records]}


@asynccontextmanager
async def world(
    records: Mapping[str, list[ZoneRecord]],
    config: AccountConfig | None = None,
    *,
    faults: Mapping[str, str] | None = None,
    mode: Mode = "sandbox",
    timeout: float = 1.0,
) -> AsyncIterator[Context]:
    async with SandboxDNS(records, faults=faults) as server:
        yield Context(
            config=config or account(),
            resolver=server.resolver(timeout=timeout),
            trust=TRUST,
            mode=mode,
        )


def summary(findings: list[Finding]) -> Summary:
    return [(f.check, f.subject, f.status, f.cause) for f in findings]


# -- the healthy world ------------------------------------------------------------------------


async def test_healthy_scenario_dns() -> None:
    healthy = load_scenario("healthy")
    records = {
        zone: [ZoneRecord(r.name, r.rtype, r.value, r.ttl) for r in rs]
        for zone, rs in healthy.dns.items()
    }
    config = parse_config(ACME.read_text(encoding="utf-8"), source="acme.yaml", environ=ENVIRON)
    async with world(records, config) as context:
        findings = await run_checks(context, select(["dns"]))
        port = context.resolver.port
    assert summary(findings) == [
        ("dns.mx", "Acme GmbH", Status.PASS, None),
        ("dns.mx", "Acme Retail GmbH", Status.PASS, None),
        ("dns.mx", "Acme Labs GmbH", Status.SKIP, None),
        ("dns.smtp_host", "Acme GmbH", Status.PASS, None),
        ("dns.smtp_host", "Acme Retail GmbH", Status.SKIP, None),
        ("dns.smtp_host", "Acme Labs GmbH", Status.SKIP, None),
        ("dns.spf", "Acme GmbH", Status.PASS, None),
        ("dns.spf", "Acme Retail GmbH", Status.PASS, None),
        ("dns.spf", "Acme Labs GmbH", Status.SKIP, None),
        ("dns.dmarc", "Acme GmbH", Status.PASS, None),
        ("dns.dmarc", "Acme Retail GmbH", Status.PASS, None),
        ("dns.dmarc", "Acme Labs GmbH", Status.SKIP, None),
    ]
    by_key = {(f.check, f.subject): f for f in findings}
    mx = by_key[("dns.mx", "Acme GmbH")]
    assert (
        mx.detail
        == "MX 10 mx.acme.example (198.51.100.10); mail to jobs@acme.example can be delivered."
    )
    assert mx.evidence == {
        "domain": "acme.example",
        "queries": (
            {
                "query": "acme.example MX",
                "kind": "answer",
                "answers": ("10 mx.acme.example.",),
                "detail": "1 MX record(s)",
            },
            {
                "query": "mx.acme.example A",
                "kind": "answer",
                "answers": ("198.51.100.10",),
                "detail": "1 A record(s)",
            },
            {
                "query": "mx.acme.example AAAA",
                "kind": "nodata",
                "answers": (),
                "detail": "the name exists but has no AAAA record",
            },
        ),
        "mx": ({"preference": 10, "host": "mx.acme.example", "addresses": ("198.51.100.10",)},),
        # The finding says which resolver answered.
        "resolver": f"127.0.0.1:{port}",
        "subjects": ("Acme GmbH",),
    }
    shared = by_key[("dns.smtp_host", "Acme Retail GmbH")]
    assert (shared.title, shared.detail) == (
        "Same SMTP host as Acme GmbH",
        "The SMTP host smtp.acme.example is checked once, in the dns.smtp_host finding for "
        "Acme GmbH.",
    )
    host = by_key[("dns.smtp_host", "Acme GmbH")]
    assert host.detail == (
        "smtp.acme.example resolves to 198.51.100.20 (documentation addresses play public ones "
        "in the sandbox); the platform's servers can reach it. The SMTP host smtp.acme.example "
        "is also that of Acme Retail GmbH: this finding covers them too."
    )
    assert host.evidence["subjects"] == ("Acme GmbH", "Acme Retail GmbH")
    spf = by_key[("dns.spf", "Acme GmbH")]
    assert spf.title == "SPF record of acme.example authorises smtp.acme.example"
    assert spf.evidence["lookups"] == 2
    retail_spf = by_key[("dns.spf", "Acme Retail GmbH")]
    assert retail_spf.title == "SPF record of retail.acme.example authorises smtp.acme.example"
    assert retail_spf.remediation == ""
    labs = by_key[("dns.mx", "Acme Labs GmbH")]
    assert labs.detail == (
        "Nothing to look up: Acme Labs GmbH has no custom address of its own and uses the "
        "settings of Acme GmbH, checked in their finding."
    )
    dmarc = by_key[("dns.dmarc", "Acme GmbH")]
    assert dmarc.title == "DMARC policy of acme.example is quarantine"
    assert "SPF passes for smtp.acme.example" in dmarc.detail


# -- dns.mx -----------------------------------------------------------------------------------


async def test_nxdomain_domain_fails() -> None:
    async with world(zones(*BASE), account("jobs@gone.acme.example")) as context:
        findings = await mx_records(context)
    assert summary(findings) == [("dns.mx", "Acme GmbH", Status.FAIL, Cause.DNS_FAILURE)]
    [finding] = findings
    assert finding.title == "gone.acme.example does not exist in DNS"
    assert finding.detail == (
        "gone.acme.example MX: the name does not exist (NXDOMAIN). Mail to "
        "jobs@gone.acme.example bounces."
    )
    assert finding.remediation == (
        f"Check the spelling of the custom address in {SETTINGS_PATH}. If it is right, publish "
        "the zone gone.acme.example with an MX record pointing to your mail server, e.g. "
        "`gone.acme.example. 3600 IN MX 10 mx.gone.acme.example.`; candidates' mail to "
        "jobs@gone.acme.example cannot be delivered until then."
    )
    assert finding.evidence["queries"] == (
        {
            "query": "gone.acme.example MX",
            "kind": "nxdomain",
            "answers": (),
            "detail": "the name does not exist (NXDOMAIN)",
        },
    )


async def test_domain_with_only_an_address_warns_about_implicit_mx() -> None:
    records = zones(*BASE, "aonly A 198.51.100.30")
    async with world(records, account("jobs@aonly.acme.example")) as context:
        findings = await mx_records(context)
    assert summary(findings) == [("dns.mx", "Acme GmbH", Status.WARN, None)]
    [finding] = findings
    assert finding.title == (
        "aonly.acme.example has no MX record; mail goes to its address record (implicit MX)"
    )
    assert "(198.51.100.30, RFC 5321 section 5.1)" in finding.detail
    assert finding.remediation == (
        "Publish an MX record for aonly.acme.example pointing to your mail server, e.g. "
        "`aonly.acme.example. 3600 IN MX 10 mx.aonly.acme.example.`; candidates' mail to "
        "jobs@aonly.acme.example cannot be delivered until then."
    )


async def test_domain_without_mx_or_address_fails() -> None:
    records = zones(*BASE, 'bare TXT "nothing here"')
    async with world(records, account("jobs@bare.acme.example")) as context:
        findings = await mx_records(context)
    assert summary(findings) == [("dns.mx", "Acme GmbH", Status.FAIL, Cause.DNS_FAILURE)]
    assert findings[0].title == "bare.acme.example has no MX record"


async def test_null_mx_fails() -> None:
    records = zones(*BASE, "nullmx MX 0 .")
    async with world(records, account("jobs@nullmx.acme.example")) as context:
        findings = await mx_records(context)
    assert summary(findings) == [("dns.mx", "Acme GmbH", Status.FAIL, Cause.DNS_FAILURE)]
    [finding] = findings
    assert finding.title == "nullmx.acme.example publishes a null MX: it accepts no mail"
    assert finding.remediation == (
        "Replace the null MX of nullmx.acme.example with the MX of your mail server, e.g. "
        "`nullmx.acme.example. 3600 IN MX 10 mx.nullmx.acme.example.`; candidates' mail to "
        "jobs@nullmx.acme.example cannot be delivered until then."
    )


async def test_mx_host_that_does_not_resolve_fails() -> None:
    async with world(zones(MX, SMTP_A, SPF, DMARC)) as context:
        findings = await mx_records(context)
    assert summary(findings) == [("dns.mx", "Acme GmbH", Status.FAIL, Cause.DNS_FAILURE)]
    [finding] = findings
    assert finding.title == "MX host of acme.example does not resolve"
    assert finding.detail == (
        "MX 10 mx.acme.example (does not resolve). mx.acme.example A: the name does not exist "
        "(NXDOMAIN) and mx.acme.example AAAA: the name does not exist (NXDOMAIN). Senders find "
        "no address to deliver mail to jobs@acme.example to."
    )
    assert finding.evidence["mx"] == (
        {"preference": 10, "host": "mx.acme.example", "addresses": ()},
    )


async def test_mx_hosts_are_sorted_and_a_dead_backup_warns() -> None:
    records = zones("@ MX 20 backup.acme.example.", MX, MX_A, SMTP_A, SPF, DMARC)
    async with world(records) as context:
        findings = await mx_records(context)
    assert summary(findings) == [("dns.mx", "Acme GmbH", Status.WARN, None)]
    assert findings[0].detail.startswith(
        "MX 10 mx.acme.example (198.51.100.10); 20 backup.acme.example (does not resolve)."
    )


async def test_servfail_is_an_error() -> None:
    async with world(zones(*BASE), faults={"acme.example": "servfail"}) as context:
        findings = await mx_records(context)
    assert summary(findings) == [("dns.mx", "Acme GmbH", Status.ERROR, Cause.DNS_FAILURE)]
    assert findings[0].detail.startswith("acme.example MX: the DNS server failed (SERVFAIL).")


async def test_timeout_is_an_error_that_says_so() -> None:
    async with world(zones(*BASE), faults={"acme.example": "timeout"}, timeout=0.5) as context:
        findings = await mx_records(context)
    assert summary(findings) == [("dns.mx", "Acme GmbH", Status.ERROR, Cause.DNS_FAILURE)]
    [finding] = findings
    assert finding.title == "MX records of acme.example could not be looked up"
    assert finding.detail.startswith(
        "acme.example MX: no answer within 0.5 s (the query timed out)."
    )
    assert finding.evidence["queries"][0]["kind"] == "timeout"


async def test_subjects_sharing_a_domain_get_one_finding() -> None:
    extra = "subcompanies:\n  - {name: Acme HR GmbH, custom_address: hr@acme.example}\n"
    async with world(zones(*BASE), account(extra=extra)) as context:
        findings = await mx_records(context)
    assert summary(findings) == [
        ("dns.mx", "Acme GmbH", Status.PASS, None),
        ("dns.mx", "Acme HR GmbH", Status.SKIP, None),
    ]
    assert findings[0].detail == (
        "MX 10 mx.acme.example (198.51.100.10); mail to jobs@acme.example and hr@acme.example "
        "can be delivered. The domain acme.example is also that of Acme HR GmbH: this finding "
        "covers them too."
    )
    assert findings[1].detail == (
        "The domain acme.example is checked once, in the dns.mx finding for Acme GmbH."
    )


# -- dns.smtp_host ----------------------------------------------------------------------------


async def test_smtp_host_with_a_private_address_fails_like_a_timeout() -> None:
    async with world(zones(MX, MX_A, "smtp A 10.0.0.25", SPF, DMARC)) as context:
        findings = await smtp_host(context)
    assert summary(findings) == [
        ("dns.smtp_host", "Acme GmbH", Status.FAIL, Cause.CONNECTION_TIMEOUT)
    ]
    assert findings[0].remediation == (
        "smtp.acme.example resolves to 10.0.0.25, a private address the platform's servers "
        "cannot reach. Enter the public host name of your SMTP server (the one your mail "
        f"provider documents) in {SMTP_PATH} > Host, or publish a public A record for "
        f"smtp.acme.example and allow the platform's egress IPs {EGRESS} to connect to port 587."
    )
    assert findings[0].evidence["addresses"] == (
        {"address": "10.0.0.25", "unreachable": "a private address"},
    )


async def test_smtp_host_with_private_and_public_addresses_warns() -> None:
    records = zones(MX, MX_A, "smtp A 10.0.0.25", "smtp A 3.64.20.1", SPF, DMARC)
    async with world(records) as context:
        findings = await smtp_host(context)
    assert summary(findings) == [("dns.smtp_host", "Acme GmbH", Status.WARN, None)]
    assert findings[0].remediation == (
        "Remove the records for 10.0.0.25 of smtp.acme.example from public DNS (keep them in "
        "your internal DNS if you need them), so that the platform only finds 3.64.20.1."
    )


@pytest.mark.parametrize(
    ("mode", "status", "cause"),
    [("live", Status.FAIL, Cause.CONNECTION_TIMEOUT), ("sandbox", Status.PASS, None)],
)
async def test_documentation_addresses_are_public_only_in_the_sandbox(
    mode: Mode, status: Status, cause: Cause | None
) -> None:
    async with world(zones(*BASE), mode=mode) as context:
        findings = await smtp_host(context)
    assert summary(findings) == [("dns.smtp_host", "Acme GmbH", status, cause)]


async def test_smtp_host_that_does_not_exist_fails() -> None:
    async with world(zones(*BASE), account(host="smtp2.acme.example")) as context:
        findings = await smtp_host(context)
    assert summary(findings) == [("dns.smtp_host", "Acme GmbH", Status.FAIL, Cause.DNS_FAILURE)]
    assert findings[0].title == "SMTP host smtp2.acme.example does not exist in DNS"


async def test_smtp_host_given_as_a_private_ip_literal_fails_without_a_query() -> None:
    async with world(zones(*BASE), account(host="192.168.1.10")) as context:
        findings = await smtp_host(context)
    assert summary(findings) == [
        ("dns.smtp_host", "Acme GmbH", Status.FAIL, Cause.CONNECTION_TIMEOUT)
    ]
    assert findings[0].detail == (
        "The SMTP host 192.168.1.10 is a private address the platform's servers cannot reach. "
        "The platform's connection test times out."
    )
    assert findings[0].evidence["queries"] == ()


# -- dns.spf ----------------------------------------------------------------------------------


TOO_MANY = (
    MX,
    MX_A,
    SMTP_A,
    DMARC,
    '@ TXT "v=spf1 a:smtp.acme.example include:big.spf.acme.example '
    'include:small.spf.acme.example -all"',
    'big.spf TXT "v=spf1 a:h1.acme.example a:h2.acme.example a:h3.acme.example '
    'a:h4.acme.example a:h5.acme.example a:h6.acme.example a:h7.acme.example -all"',
    'small.spf TXT "v=spf1 a:h8.acme.example a:h9.acme.example -all"',
    *(f"h{n} A 198.51.100.{100 + n}" for n in range(1, 10)),
)


async def test_spf_with_more_than_ten_lookups_fails() -> None:
    async with world(zones(*TOO_MANY)) as context:
        findings = await spf_record(context)
    assert summary(findings) == [("dns.spf", "Acme GmbH", Status.FAIL, Cause.POLICY_REJECTED)]
    [finding] = findings
    assert finding.title == "SPF record of acme.example needs more than 10 DNS lookups (permerror)"
    assert finding.remediation == (
        "Receivers stop at 10 DNS lookups and treat the record as permerror. In the TXT record "
        "at acme.example, flatten or remove includes (their cost: include:big.spf.acme.example "
        "(8 lookups) and include:small.spf.acme.example (3 lookups)): replace the largest with "
        "the ip4:/ip6: ranges it publishes, or remove services that no longer send as "
        "acme.example, until the count is 10 or less."
    )
    assert "Evaluation needs 12 DNS lookups" in finding.detail
    assert finding.evidence["lookups"] == 12


async def test_spf_with_three_void_lookups_fails() -> None:
    spf = (
        '@ TXT "v=spf1 a:smtp.acme.example a:old1.acme.example a:old2.acme.example '
        'a:old3.acme.example -all"'
    )
    async with world(zones(MX, MX_A, SMTP_A, DMARC, spf)) as context:
        findings = await spf_record(context)
    assert summary(findings) == [("dns.spf", "Acme GmbH", Status.FAIL, Cause.POLICY_REJECTED)]
    [finding] = findings
    assert finding.title == "SPF record of acme.example has more than 2 void lookups (permerror)"
    assert (
        "More than 2 void lookups (names that do not exist or have no record): "
        "'a:old1.acme.example' in the record of acme.example, 'a:old2.acme.example' in the "
        "record of acme.example, 'a:old3.acme.example' in the record of acme.example"
    ) in finding.detail


async def test_spf_not_authorising_the_smtp_host_warns() -> None:
    async with world(zones(MX, MX_A, SMTP_A, DMARC, '@ TXT "v=spf1 mx -all"')) as context:
        findings = await spf_record(context)
    assert summary(findings) == [("dns.spf", "Acme GmbH", Status.WARN, None)]
    [finding] = findings
    assert (
        finding.title == "SPF record of acme.example does not authorise SMTP host smtp.acme.example"
    )
    assert finding.remediation == (
        "Add `a:smtp.acme.example` (or the include: your mail provider documents) to the TXT "
        'record at acme.example, e.g. `acme.example. 3600 IN TXT "v=spf1 mx a:smtp.acme.example '
        '-all"`.'
    )
    assert finding.evidence["hosts"][0]["evaluations"][0]["result"] == "fail"


async def test_no_spf_record_warns() -> None:
    async with world(zones(MX, MX_A, SMTP_A, DMARC)) as context:
        findings = await spf_record(context)
    assert summary(findings) == [("dns.spf", "Acme GmbH", Status.WARN, None)]
    assert findings[0].title == "No SPF record for acme.example"


async def test_two_spf_records_fail() -> None:
    second = '@ TXT "v=spf1 include:mail.provider.example -all"'
    async with world(zones(*BASE, second)) as context:
        findings = await spf_record(context)
    assert summary(findings) == [("dns.spf", "Acme GmbH", Status.FAIL, Cause.POLICY_REJECTED)]
    assert findings[0].title == "acme.example publishes 2 SPF records (permerror)"


async def test_plus_all_warns_that_everyone_is_authorised() -> None:
    async with world(zones(MX, MX_A, SMTP_A, DMARC, '@ TXT "v=spf1 mx +all"')) as context:
        findings = await spf_record(context)
    assert summary(findings) == [("dns.spf", "Acme GmbH", Status.WARN, None)]
    assert findings[0].title == "SPF record of acme.example authorises everyone"
    assert (
        "The record authorises every address on the internet ('+all' in the record of "
        "acme.example matches 240.0.0.1, an address no server sends from)"
    ) in findings[0].detail


# -- dns.dmarc --------------------------------------------------------------------------------

REDIRECT_ADVICE = (
    "On the server that redirects jobs@acme.example to acme-jobs@m.personio.de: redirect, do "
    "not forward: keep the original headers and body unchanged so DKIM survives; if your "
    "server rewrites the envelope sender (SRS), SPF alignment still fails but DKIM carries "
    "DMARC; enable ARC sealing if your server supports it (Microsoft 365 does for trusted ARC "
    "sealers, Google Workspace seals)."
)


async def test_dmarc_reject_warns_about_redirected_mail() -> None:
    records = zones(MX, MX_A, SMTP_A, SPF, '_dmarc TXT "v=DMARC1; p=reject"')
    async with world(records) as context:
        findings = await dmarc_record(context)
    assert summary(findings) == [("dns.dmarc", "Acme GmbH", Status.WARN, None)]
    [finding] = findings
    assert (
        finding.title == "DMARC policy of acme.example is reject: redirected mail depends on DKIM"
    )
    assert finding.remediation == REDIRECT_ADVICE
    assert (
        "Mail that candidates send to jobs@acme.example and your server redirects to "
        "acme-jobs@m.personio.de is judged at the platform by the DMARC policy of the "
        "candidate's own domain: SPF fails there (your MX is not in the candidate's SPF record) "
        "unless your server rewrites the envelope sender with SRS"
    ) in finding.detail
    assert (
        "DKIM must be signed by your server with d=acme.example (adkim=r); maildiag cannot "
        "verify that without a message it sent"
    ) in finding.detail
    assert finding.evidence["policy"] == "reject"


async def test_dmarc_none_passes_with_a_note() -> None:
    async with world(zones(*BASE)) as context:
        findings = await dmarc_record(context)
    assert summary(findings) == [("dns.dmarc", "Acme GmbH", Status.PASS, None)]
    assert findings[0].title == "DMARC policy of acme.example is none (monitoring only)"
    assert findings[0].detail.endswith(
        "p=none only asks for reports: receivers deliver mail that fails DMARC."
    )


async def test_no_dmarc_record_warns() -> None:
    async with world(zones(MX, MX_A, SMTP_A, SPF)) as context:
        findings = await dmarc_record(context)
    assert summary(findings) == [("dns.dmarc", "Acme GmbH", Status.WARN, None)]
    assert findings[0].remediation == (
        "Publish a TXT record at _dmarc.acme.example: `_dmarc.acme.example. 3600 IN TXT "
        '"v=DMARC1; p=none; rua=mailto:dmarc-reports@acme.example"`, read the reports, then '
        "tighten the policy to p=quarantine."
    )


async def test_dmarc_quarantine_without_spf_alignment_warns() -> None:
    records = zones(
        MX, MX_A, SMTP_A, '@ TXT "v=spf1 mx -all"', '_dmarc TXT "v=DMARC1; p=quarantine"'
    )
    async with world(records) as context:
        findings = await dmarc_record(context)
    assert summary(findings) == [("dns.dmarc", "Acme GmbH", Status.WARN, None)]
    assert findings[0].title == (
        "DMARC p=quarantine for acme.example, but SPF does not align for smtp.acme.example"
    )


async def test_dmarc_of_a_subdomain_comes_from_the_parent_through_sp() -> None:
    records = zones(
        MX,
        MX_A,
        SMTP_A,
        "jobs MX 10 mx.acme.example.",
        '_dmarc TXT "v=DMARC1; p=reject; sp=none"',
    )
    async with world(records, account("hr@jobs.acme.example")) as context:
        findings = await dmarc_record(context)
    assert summary(findings) == [("dns.dmarc", "Acme GmbH", Status.PASS, None)]
    assert findings[0].evidence["queried"] == ("_dmarc.jobs.acme.example", "_dmarc.acme.example")
    assert (findings[0].evidence["policy"], findings[0].evidence["policy_tag"]) == ("none", "sp")


# -- the query layer and the address rule -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rdtype", "faults", "expected"),
    [
        (
            "acme.example",
            "TXT",
            {},
            DNSAnswer("acme.example", "TXT", "answer", ("v=spf1 -all",), "1 TXT record(s)"),
        ),
        (
            "gone.acme.example",
            "A",
            {},
            DNSAnswer(
                "gone.acme.example", "A", "nxdomain", (), "the name does not exist (NXDOMAIN)"
            ),
        ),
        (
            "acme.example",
            "MX",
            {},
            DNSAnswer("acme.example", "MX", "nodata", (), "the name exists but has no MX record"),
        ),
        (
            "acme.example",
            "MX",
            {"acme.example": "servfail"},
            DNSAnswer("acme.example", "MX", "servfail", (), "the DNS server failed (SERVFAIL)"),
        ),
        (
            "acme.example",
            "MX",
            {"acme.example": "refused"},
            DNSAnswer(
                "acme.example", "MX", "refused", (), "the DNS server refused the query (REFUSED)"
            ),
        ),
        (
            "acme.example",
            "MX",
            {"acme.example": "timeout"},
            DNSAnswer(
                "acme.example", "MX", "timeout", (), "no answer within 0.2 s (the query timed out)"
            ),
        ),
    ],
)
async def test_query_kinds(
    name: str, rdtype: str, faults: dict[str, str], expected: DNSAnswer
) -> None:
    records = zones('@ TXT "v=spf1" " -all"')
    async with SandboxDNS(records, faults=faults) as server:
        answer = await query_dns(server.resolver(timeout=0.2), name, rdtype, lifetime=0.2)
    assert answer == expected


@pytest.mark.parametrize(
    ("address", "live", "sandbox"),
    [
        ("10.0.0.25", "a private address", "a private address"),
        ("172.16.5.5", "a private address", "a private address"),
        ("192.168.1.1", "a private address", "a private address"),
        ("fd00::25", "a private address", "a private address"),
        ("127.0.0.1", "a loopback address", "a loopback address"),
        ("169.254.1.1", "a link-local address", "a link-local address"),
        (
            "100.64.0.1",
            "a shared address (carrier-grade NAT, 100.64.0.0/10)",
            "a shared address (carrier-grade NAT, 100.64.0.0/10)",
        ),
        ("0.0.0.0", "an unspecified address", "an unspecified address"),  # noqa: S104
        ("240.0.0.1", "a reserved address", "a reserved address"),
        ("::ffff:10.1.1.1", "a private address", "a private address"),
        ("3.121.59.239", None, None),
        ("2a00:1450::1", None, None),
        (
            "198.51.100.20",
            "a documentation address (RFC 5737/3849) that is not routed on the internet",
            None,
        ),
        (
            "2001:db8::25",
            "a documentation address (RFC 5737/3849) that is not routed on the internet",
            None,
        ),
    ],
)
def test_unreachable_reason(address: str, live: str | None, sandbox: str | None) -> None:
    assert unreachable_reason(address, "live") == live
    assert unreachable_reason(address, "sandbox") == sandbox


def test_dns_checks_are_registered_with_their_flows() -> None:
    checks = all_checks()
    assert {i: (checks[i].flow, checks[i].function) for i in checks if i.startswith("dns.")} == {
        "dns.mx": ("inbound", mx_records),
        "dns.smtp_host": ("outbound", smtp_host),
        "dns.spf": ("outbound", spf_record),
        "dns.dmarc": ("inbound", dmarc_record),
    }
