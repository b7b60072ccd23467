"""Tests for the allowlist checks: CIDR coverage and snippets (pure), the greeting probe
against small loopback servers, and reachability over the sandbox's submission server."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import dns.asyncresolver
import pytest

from diagnostics.checks.allowlist.coverage import classify_coverage, coverage, documented_allowlist
from diagnostics.checks.allowlist.reachability import classify_reachability, reachability
from diagnostics.config import AccountConfig, load_config, parse_config
from diagnostics.context import Context, Endpoints, Timeouts
from diagnostics.findings import Cause, Finding, Status
from diagnostics.netblocks import compare_allowlist
from diagnostics.profiles import IPNetwork, get_profile
from diagnostics.report.snippets import (
    classify_server_family,
    load_server_families,
    load_snippet_templates,
    render_snippet,
    render_snippets,
)
from diagnostics.sandbox.scenario import Scenario
from diagnostics.sandbox.scenariofile import load_scenario
from diagnostics.sandbox.world import Sandbox
from diagnostics.smtpgreeting import (
    Admission,
    ProbeResult,
    classify_greeting,
    parse_greeting,
    probe_greeting,
)
from diagnostics.smtpreply import Reply
from tests.sandbox import conftest as sandbox
from tests.sandbox.conftest import with_changes

# pytest loads tests/sandbox/conftest.py only for tests below it: these are its fixtures here.
environ = sandbox.environ
healthy = sandbox.healthy
make_world = sandbox.make_world

ACME = Path(__file__).resolve().parents[2] / "fixtures" / "configs" / "acme.yaml"
ACME_TEXT = ACME.read_text(encoding="utf-8")
ENVIRON = {
    "ACME_SMTP_PASSWORD": "Allowlist-Unit-Pw-7713",
    "ACME_RETAIL_SMTP_PASSWORD": "Allowlist-Unit-Retail-Pw-2291",
}
PERSONIO = get_profile("personio")
EGRESS = ("3.121.59.239", "3.65.146.216", "18.158.122.164")
SETTINGS_PATH = "Settings > Recruiting > Recruiting > General > Recruiting email settings"
ALL_THREE = "[3.121.59.239/32, 3.65.146.216/32, 18.158.122.164/32]"
SUBMISSION = "198.51.100.20"
GREETING = "220 smtp.acme.example ESMTP Postfix (Debian/GNU)"
REJECTED = "554 5.7.1 <unknown[18.158.122.164]>: Client host rejected: Access denied"

WorldMaker = Callable[[Scenario], AbstractAsyncContextManager[Sandbox]]


def nets(*texts: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(t) for t in texts)


def config(text: str = ACME_TEXT) -> AccountConfig:
    return parse_config(text, source="acme.yaml", environ=ENVIRON)


def summary(findings: list[Finding]) -> list[tuple[str, str, Status, Cause | None]]:
    return [(f.check, f.subject, f.status, f.cause) for f in findings]


# -- coverage: CIDR arithmetic -------------------------------------------------------------


def test_missing_lists_exactly_the_egress_ip_left_out() -> None:
    result = compare_allowlist(nets("3.121.59.239/32", "3.65.146.216/32"), PERSONIO.egress_ips)
    assert result.missing == nets("18.158.122.164/32")
    assert result.covered == nets("3.121.59.239/32", "3.65.146.216/32")
    assert result.extra == ()
    assert result.broader == ()
    assert result.too_broad == ()


def test_a_slash_16_covers_an_egress_slash_32_and_is_named_broader() -> None:
    allowlist = nets("3.121.0.0/16", "3.65.146.216/32", "18.158.122.164/32")
    result = compare_allowlist(allowlist, PERSONIO.egress_ips)
    assert result.missing == ()
    assert result.broader == nets("3.121.0.0/16")
    assert result.too_broad == ()
    verdict = classify_coverage(
        allowlist,
        PERSONIO.egress_ips,
        platform="Personio",
        where="The allowlist documented for Acme GmbH",
        server="smtp.acme.example",
    )
    assert verdict.outcome.status is Status.PASS
    assert verdict.outcome.detail == (
        "The allowlist documented for Acme GmbH permits all 3 egress IPs of Personio "
        "(3.121.59.239, 3.65.146.216, 18.158.122.164). 3.121.0.0/16 admit more addresses than "
        "Personio needs (each holds an egress IP and more besides)."
    )
    assert verdict.snippet_networks == ()


def test_adjacent_entries_together_cover_an_egress_network() -> None:
    egress = nets("198.51.100.0/24")
    halves = nets("198.51.100.128/25", "198.51.100.0/25")
    assert compare_allowlist(halves, egress).covered == egress
    assert compare_allowlist(halves[:1], egress).missing == egress


def test_ipv6_allowlist_against_ipv6_and_ipv4_egress_networks() -> None:
    egress = nets("2001:db8:10:5::/64", "2001:db8:20::1/128", "3.121.59.239/32")
    allowlist = nets("2001:db8:10::/48", "192.0.2.0/24")
    result = compare_allowlist(allowlist, egress)
    assert result.covered == nets("2001:db8:10:5::/64")
    assert result.missing == nets("2001:db8:20::1/128", "3.121.59.239/32")
    assert result.extra == nets("192.0.2.0/24")
    assert result.broader == nets("2001:db8:10::/48")


def test_the_whole_internet_passes_every_ip_but_warns() -> None:
    verdict = classify_coverage(
        nets("0.0.0.0/0"),
        PERSONIO.egress_ips,
        platform="Personio",
        where="The allowlist documented for Acme GmbH",
        server="smtp.acme.example",
    )
    assert verdict.outcome.status is Status.WARN
    assert verdict.outcome.cause is None
    assert verdict.coverage is not None
    assert verdict.coverage.too_broad == nets("0.0.0.0/0")
    assert verdict.outcome.detail == (
        "The allowlist documented for Acme GmbH permits every Personio egress IP, but "
        "0.0.0.0/0 (every address on the internet): for clients from there the allowlist "
        "protects nothing, and only the account's password stands between them and sending "
        "through your server. 0.0.0.0/0 admit more addresses than Personio needs (each holds "
        "an egress IP and more besides)."
    )
    assert verdict.outcome.remediation == (
        "Replace 0.0.0.0/0 with Personio's egress IPs (3.121.59.239, 3.65.146.216, "
        "18.158.122.164) and the networks of your own clients; ready-to-paste lines are under "
        "'Settings to copy' in the report and in this finding's evidence ('snippets')."
    )
    assert verdict.snippet_networks == PERSONIO.egress_ips


@pytest.mark.parametrize(
    ("entry", "broad"),
    [
        ("3.0.0.0/8", True),
        ("3.120.0.0/15", True),
        ("3.121.0.0/16", False),
        ("10.0.0.0/8", False),
        ("::/0", True),
        ("2001:db8::/32", False),
        ("fc00::/7", False),
    ],
)
def test_too_broad_means_wider_than_an_organisation_and_not_internal(
    entry: str, broad: bool
) -> None:
    result = compare_allowlist(nets(entry), ())
    assert result.too_broad == (nets(entry) if broad else ())


def test_undocumented_allowlist_skips_and_names_every_egress_ip() -> None:
    verdict = classify_coverage(
        None,
        PERSONIO.egress_ips,
        platform="Personio",
        where="unused",
        server="smtp.acme.example",
    )
    assert verdict.outcome.status is Status.SKIP
    assert verdict.outcome.detail == (
        "No allowlist documented; if your server restricts clients by IP, it must permit: "
        "3.121.59.239, 3.65.146.216, 18.158.122.164 (Personio's egress IPs). Ready-to-paste "
        "lines are under 'Settings to copy' in the report and in this finding's evidence "
        "('snippets')."
    )
    assert verdict.snippet_networks == PERSONIO.egress_ips
    assert verdict.coverage is None


def test_missing_ip_fails_with_client_ip_rejected_and_names_only_it() -> None:
    verdict = classify_coverage(
        nets("3.121.59.239/32", "3.65.146.216/32", "192.0.2.0/24"),
        PERSONIO.egress_ips,
        platform="Personio",
        where="The allowlist documented for Acme GmbH",
        server="smtp.acme.example",
    )
    outcome = verdict.outcome
    assert (outcome.status, outcome.cause) == (Status.FAIL, Cause.CLIENT_IP_REJECTED)
    assert outcome.title == "Allowlist lacks 1 of 3 Personio egress IPs"
    assert outcome.detail == (
        "The allowlist documented for Acme GmbH does not permit 18.158.122.164; the platform's "
        "connections from it are refused (its 'Test connection' fails with 'Client host "
        "rejected' or a timeout whenever it connects from there). It permits 3.121.59.239, "
        "3.65.146.216. Entries that hold no Personio egress IP (your other clients; the "
        "platform does not need them): 192.0.2.0/24."
    )
    assert outcome.remediation == (
        "Permit 18.158.122.164 on smtp.acme.example (the server's allowlist or its firewall): "
        "ready-to-paste lines are under 'Settings to copy' in the report and in this finding's "
        "evidence ('snippets'). Then add it to the allowlist in the account file and run the "
        "audit again."
    )
    assert verdict.snippet_networks == nets("18.158.122.164/32")


def test_a_subcompany_on_the_same_host_inherits_the_parents_allowlist() -> None:
    acme = config()
    retail, labs = acme.subcompanies
    assert documented_allowlist(retail, acme.company) == (PERSONIO.egress_ips, "Acme GmbH")
    assert documented_allowlist(labs, acme.company) == (None, None)
    elsewhere = config(
        ACME_TEXT.replace("      host: smtp.acme.example", "      host: mail.retail.example")
    )
    assert documented_allowlist(elsewhere.subcompanies[0], elsewhere.company) == (None, None)
    own = config(
        ACME_TEXT.replace(
            "      password: ${ACME_RETAIL_SMTP_PASSWORD}\n",
            "      password: ${ACME_RETAIL_SMTP_PASSWORD}\n    allowlist: [3.121.59.239/32]\n",
        )
    )
    assert documented_allowlist(own.subcompanies[0], own.company) == (
        nets("3.121.59.239/32"),
        "Acme Retail GmbH",
    )


# -- snippets ------------------------------------------------------------------------------

MISSING = nets("3.65.146.216/32", "18.158.122.164/32")
SNIPPETS = {
    "postfix_access": """\
# Postfix: put these lines in /etc/postfix/platform_clients.cidr
3.65.146.216 OK
18.158.122.164 OK
# Consult the table before the restriction that refuses unknown clients (main.cf; where the
# submission service sets smtpd_client_restrictions with -o in master.cf, change it there):
postconf -e "smtpd_client_restrictions = check_client_access cidr:/etc/postfix/platform_clients.cidr, $(postconf -h smtpd_client_restrictions)"
# A cidr: table is read as it is and needs no postmap. Apply the change:
postfix reload""",
    "postfix_mynetworks": """\
# Postfix, only if your server admits clients through mynetworks (permit_mynetworks).
# mynetworks also lets these addresses relay without SMTP AUTH, and every customer of the
# platform sends from them: prefer the client access table.
postconf -e "mynetworks = $(postconf -h mynetworks) 3.65.146.216 18.158.122.164"
postfix reload""",
    "exchange": """\
# Exchange Management Shell: find the receive connector that serves port 587 ...
Get-ReceiveConnector | Where-Object { $_.Bindings -match ':587$' } | Format-Table Identity, RemoteIPRanges
# ... and add the platform's addresses to it (use its Identity for <name>):
Set-ReceiveConnector "<name>" -RemoteIPRanges @{Add="3.65.146.216","18.158.122.164"}""",
    "exchange_online": """\
# Exchange Online: add no inbound connector for the platform. It signs in with SMTP AUTH,
# and a connector admits servers that relay without signing in, which the platform is not.
# What it needs instead: Authenticated SMTP enabled for the sending mailbox (Microsoft 365
# admin center > Users > Active users > the mailbox > Mail > Manage email apps).""",
    "exim": """\
# Exim: in the main section of the configuration (a "<;" list takes IPv6 addresses as they are)
hostlist platform_clients = <; 3.65.146.216 ; 18.158.122.164
# ... and in the ACL that refuses unknown clients (acl_smtp_connect, or acl_smtp_mail),
# ahead of its deny statement:
  accept hosts = +platform_clients
# Check the configuration (exim -bV), then reload Exim.""",
    "nftables": """\
# nftables: accept the platform on port 587, ahead of any drop (table inet filter, chain input)
nft insert rule inet filter input ip saddr { 3.65.146.216, 18.158.122.164 } tcp dport 587 accept""",
    "iptables": """\
# iptables: accept the platform on port 587, ahead of any DROP or REJECT rule
iptables -I INPUT -p tcp -s 3.65.146.216 --dport 587 -j ACCEPT
iptables -I INPUT -p tcp -s 18.158.122.164 --dport 587 -j ACCEPT""",
}


def test_every_family_in_the_data_file_has_an_expected_text() -> None:
    assert list(load_snippet_templates()) == list(SNIPPETS)


@pytest.mark.parametrize("family", list(SNIPPETS))
def test_snippet_for_the_missing_ips(family: str) -> None:
    template = load_snippet_templates()[family]
    assert render_snippet(template, MISSING, port=587) == SNIPPETS[family]


MIXED = nets("18.158.122.164/32", "2001:db8:20::1/128", "2001:db8:30::/48")
SNIPPETS_V6 = {
    "postfix_access": "18.158.122.164 OK\n2001:db8:20::1 OK\n2001:db8:30::/48 OK",
    "postfix_mynetworks": "18.158.122.164 [2001:db8:20::1]/128 [2001:db8:30::]/48",
    "exim": "<; 18.158.122.164 ; 2001:db8:20::1 ; 2001:db8:30::/48\n",
    "nftables": (
        "nft insert rule inet filter input ip saddr { 18.158.122.164 } tcp dport 465 accept\n"
        "nft insert rule inet filter input ip6 saddr { 2001:db8:20::1, 2001:db8:30::/48 } "
        "tcp dport 465 accept"
    ),
    "iptables": (
        "iptables -I INPUT -p tcp -s 18.158.122.164 --dport 465 -j ACCEPT\n"
        "ip6tables -I INPUT -p tcp -s 2001:db8:20::1 --dport 465 -j ACCEPT\n"
        "ip6tables -I INPUT -p tcp -s 2001:db8:30::/48 --dport 465 -j ACCEPT"
    ),
}


@pytest.mark.parametrize("family", list(SNIPPETS_V6))
def test_snippets_write_ipv6_networks_the_way_each_family_reads_them(family: str) -> None:
    text = render_snippet(load_snippet_templates()[family], MIXED, port=465)
    assert SNIPPETS_V6[family] in text


def test_nothing_to_permit_means_no_snippets() -> None:
    assert render_snippets((), port=587) == {}
    assert render_snippets(MISSING, port=587) == SNIPPETS


FIREWALL_FIRST = ["nftables", "iptables", "postfix_access", "postfix_mynetworks", "exchange"]


@pytest.mark.parametrize(
    ("family", "first"),
    [
        ("postfix", ["postfix_access", "postfix_mynetworks", "nftables", "iptables"]),
        ("exim", ["exim", "nftables", "iptables", "postfix_access"]),
        ("exchange", ["exchange", "nftables", "iptables", "postfix_access"]),
        ("exchange_online", ["exchange_online", "nftables", "iptables", "postfix_access"]),
        # No snippet of its own: the firewall's first.
        ("sendmail", FIREWALL_FIRST),
        (None, FIREWALL_FIRST),
    ],
)
def test_the_snippets_of_the_server_family_come_first(family: str | None, first: list[str]) -> None:
    snippets = render_snippets(MISSING, port=587, server_family=family)
    assert list(snippets)[: len(first)] == first
    assert snippets == SNIPPETS


@pytest.mark.parametrize(
    ("greeting", "host", "family"),
    [
        (GREETING, "smtp.acme.example", "postfix"),
        ("220 mail.example.org ESMTP Exim 4.96 Mon, 01 Dec 2025 10:00:00 +0000", "", "exim"),
        (
            "220 EX01.corp.example Microsoft ESMTP MAIL Service ready at Mon, 1 Dec 2025",
            "",
            "exchange",
        ),
        (
            "220 AM0PR01CA0001.outlook.office365.com Microsoft ESMTP MAIL Service ready",
            "",
            "exchange_online",
        ),
        ("220 mail.example.org ESMTP", "smtp.office365.com", "exchange_online"),
        ("220 mail.example.org ESMTP Sendmail 8.17.1/8.17.1; Mon, 1 Dec 2025", "", "sendmail"),
        # Many servers hide their software: nothing to go by.
        ("220 mail.example.org ESMTP", "mail.example.org", None),
        ('220 x ESMTP <script>alert("banner")</script>', "", None),
    ],
)
def test_the_server_family_is_read_from_the_greeting_and_host(
    greeting: str, host: str, family: str | None
) -> None:
    assert classify_server_family([greeting], host=host) == family


def test_every_snippet_names_a_known_server_family_or_the_firewall() -> None:
    known = {*load_server_families(), "firewall"}
    assert {t.server for t in load_snippet_templates().values()} <= known


# -- coverage: the registered check --------------------------------------------------------


def unit_context(account: AccountConfig, **fields: Any) -> Context:
    return Context(
        config=account,
        resolver=dns.asyncresolver.Resolver(configure=False),
        trust=ssl.create_default_context(),
        **fields,
    )


async def test_coverage_of_the_acme_account() -> None:
    findings = await coverage(unit_context(config()))
    assert summary(findings) == [
        ("allowlist.coverage", "Acme GmbH", Status.PASS, None),
        ("allowlist.coverage", "Acme Retail GmbH", Status.PASS, None),
        ("allowlist.coverage", "Acme Labs GmbH", Status.SKIP, None),
    ]
    retail = findings[1]
    assert retail.detail == (
        "The allowlist documented for Acme GmbH (inherited: Acme Retail GmbH has none of its "
        "own and uses the same SMTP host, smtp.acme.example) permits all 3 egress IPs of "
        "Personio (3.121.59.239, 3.65.146.216, 18.158.122.164)."
    )
    assert retail.evidence["allowlist_of"] == "Acme GmbH"
    assert retail.evidence["port"] == 465
    assert findings[2].detail == (
        "Acme Labs GmbH has no SMTP settings of its own: its mail goes out through Acme GmbH's "
        "settings, which the finding for Acme GmbH covers."
    )


async def test_coverage_fail_carries_the_snippets_for_the_subjects_port() -> None:
    account = config(ACME_TEXT.replace(ALL_THREE, "[3.121.59.239/32]"))
    findings = await coverage(unit_context(account))
    assert summary(findings)[:2] == [
        ("allowlist.coverage", "Acme GmbH", Status.FAIL, Cause.CLIENT_IP_REJECTED),
        ("allowlist.coverage", "Acme Retail GmbH", Status.FAIL, Cause.CLIENT_IP_REJECTED),
    ]
    company, retail = findings[0].evidence, findings[1].evidence
    assert company["missing"] == ("3.65.146.216/32", "18.158.122.164/32")
    assert company["covered"] == ("3.121.59.239/32",)
    assert company["extra"] == ()
    assert company["snippets"]["nftables"] == SNIPPETS["nftables"]
    assert retail["snippets"]["iptables"] == SNIPPETS["iptables"].replace("587", "465")


async def test_coverage_without_an_allowlist_skips_with_every_ip_in_the_snippets() -> None:
    account = config(ACME_TEXT.replace(f"  allowlist: {ALL_THREE}\n", ""))
    findings = await coverage(unit_context(account))
    assert [f.status for f in findings] == [Status.SKIP, Status.SKIP, Status.SKIP]
    assert findings[0].evidence["allowlist"] is None
    assert findings[0].evidence["snippets"]["postfix_mynetworks"].splitlines()[3] == (
        'postconf -e "mynetworks = $(postconf -h mynetworks) '
        '3.121.59.239 3.65.146.216 18.158.122.164"'
    )


# -- reachability: pure --------------------------------------------------------------------


def test_a_multi_line_greeting_is_one_reply() -> None:
    lines = [b"220-smtp.acme.example ESMTP\r\n", b"220-Authorised use only\r\n", b"220 ready\r\n"]
    reply = parse_greeting(lines)
    assert reply == Reply(220, ("smtp.acme.example ESMTP", "Authorised use only", "ready"))
    assert reply.verbatim == (
        "220-smtp.acme.example ESMTP",
        "220-Authorised use only",
        "220 ready",
    )
    assert parse_greeting([b"220\r\n"]) == Reply(220, ("",))
    assert parse_greeting([b"220\r\n"]).verbatim == ("220",)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([b"HTTP/1.1 400 Bad Request\r\n"], "not an SMTP reply line: 'HTTP/1.1 400 Bad Request'"),
        ([b"220-hello\r\n", b"554 no\r\n"], "reply lines with different codes: 220, 554"),
        ([b"220-hello\r\n"], "the reply does not end"),
        ([], "no reply"),
    ],
)
def test_what_is_no_greeting(lines: list[bytes], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(") + "$"):
        parse_greeting(lines)


@pytest.mark.parametrize(
    ("code", "admission"),
    [
        (220, Admission.ACCEPTED),
        (554, Admission.REJECTED),
        (521, Admission.REJECTED),
        (421, Admission.DEFERRED),
        (250, Admission.GARBLED),
    ],
)
def test_greeting_codes(code: int, admission: Admission) -> None:
    assert classify_greeting(code) is admission


def result(ip: str, admission: Admission, *, reply: str = "", error: str = "") -> ProbeResult:
    return ProbeResult(ip, SUBMISSION, admission, reply=reply, error=error, elapsed_ms=1.0)


def classify(*results: ProbeResult) -> tuple[Status, Cause | None, tuple[str, ...], str]:
    verdict = classify_reachability(results, server="smtp.acme.example", port=587, profile=PERSONIO)
    return verdict.outcome.status, verdict.outcome.cause, verdict.refused, verdict.outcome.title


def test_one_ip_silently_dropped_is_a_timeout_of_that_ip() -> None:
    outcome = classify(
        result(EGRESS[0], Admission.ACCEPTED, reply=GREETING),
        result(EGRESS[1], Admission.ACCEPTED, reply=GREETING),
        result(EGRESS[2], Admission.NO_GREETING, error="no greeting within 0.5 s"),
    )
    assert outcome == (
        Status.FAIL,
        Cause.CONNECTION_TIMEOUT,
        ("18.158.122.164",),
        "smtp.acme.example port 587 refuses 1 of 3 Personio egress IPs",
    )


def test_a_rejection_outranks_a_timeout_when_ips_fail_differently() -> None:
    outcome = classify(
        result(EGRESS[0], Admission.ACCEPTED, reply=GREETING),
        result(EGRESS[1], Admission.NO_GREETING, error="no greeting within 0.5 s"),
        result(EGRESS[2], Admission.REJECTED, reply=REJECTED),
    )
    assert outcome[:3] == (
        Status.FAIL,
        Cause.CLIENT_IP_REJECTED,
        ("3.65.146.216", "18.158.122.164"),
    )


@pytest.mark.parametrize(
    ("admission", "cause"),
    [
        (Admission.REFUSED, Cause.CONNECTION_REFUSED),
        (Admission.CONNECT_TIMEOUT, Cause.CONNECTION_TIMEOUT),
        (Admission.NO_GREETING, Cause.CONNECTION_TIMEOUT),
        (Admission.CLOSED, Cause.CONNECTION_REFUSED),
    ],
)
def test_every_ip_failing_the_same_way_is_probably_not_the_allowlist(
    admission: Admission, cause: Cause
) -> None:
    outcome = classify(*(result(ip, admission, error="connection refused") for ip in EGRESS))
    assert outcome == (
        Status.FAIL,
        cause,
        (),
        "smtp.acme.example port 587 answers none of the Personio egress IPs",
    )


def test_every_ip_closed_in_the_middle_of_the_greeting_is_no_refusal() -> None:
    # Half a greeting, then a close: the connection was accepted and the server spoke, so the
    # protocol broke; only a close before a single byte reads as a refusal.
    half = "220-smtp.acme.example ESMTP"
    outcome = classify(
        *(
            result(ip, Admission.CLOSED, reply=half, error="connection closed without a greeting")
            for ip in EGRESS
        )
    )
    assert outcome == (
        Status.FAIL,
        Cause.UNKNOWN,
        (),
        "smtp.acme.example port 587 answers none of the Personio egress IPs",
    )


def test_every_ip_rejected_in_words_is_the_allowlist() -> None:
    outcome = classify(
        *(result(ip, Admission.REJECTED, reply="554 5.7.1 go away") for ip in EGRESS)
    )
    assert outcome == (
        Status.FAIL,
        Cause.CLIENT_IP_REJECTED,
        EGRESS,
        "smtp.acme.example port 587 rejects every Personio egress IP",
    )


def test_a_tls_failure_is_not_the_allowlists_doing() -> None:
    failure = "TLS handshake failed: certificate: certificate has expired"
    verdict = classify_reachability(
        [result(ip, Admission.TLS_FAILED, error=failure) for ip in EGRESS],
        server="smtp.acme.example",
        port=465,
        profile=PERSONIO,
    )
    assert (verdict.outcome.status, verdict.outcome.cause, verdict.refused) == (
        Status.WARN,
        None,
        (),
    )
    assert verdict.outcome.detail == (
        "The TLS handshake failed from 3.121.59.239, 3.65.146.216, 18.158.122.164 before the "
        "server's greeting (TLS handshake failed: certificate: certificate has expired), so "
        "whether the server admits those egress IPs cannot be seen. That is not an allowlist "
        "problem: smtp.tls reports it."
    )


# -- reachability: the probe against small loopback servers ---------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]


@asynccontextmanager
async def tiny_server(handler: Handler) -> AsyncIterator[int]:
    """A loopback TCP server running ``handler`` per connection; yields its port.

    On exit it waits for the handlers to finish (each ends when the probe hangs up).
    """
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            await writer.wait_closed()

    def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.ensure_future(serve(reader, writer)))

    server = await asyncio.start_server(connected, host="127.0.0.1", port=0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        async with asyncio.timeout(2):
            await asyncio.gather(*tasks)
        await server.wait_closed()


def probe_context(port: int) -> Context:
    return unit_context(
        config(),
        mode="sandbox",
        endpoints=Endpoints({(SUBMISSION, 587): ("127.0.0.1", port)}, strict=True),
        timeouts=Timeouts(connect=1, banner=0.5, command=1),
    )


async def probe(port: int) -> ProbeResult:
    return await probe_greeting(
        SUBMISSION, 587, egress_ip=EGRESS[0], source="127.0.0.1", context=probe_context(port)
    )


def greets(*lines: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"".join(lines))
        await writer.drain()
        await reader.read(100)

    return handler


async def test_probe_reads_a_multi_line_greeting_and_sends_quit() -> None:
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-smtp.acme.example ESMTP\r\n220 ready\r\n")
        await writer.drain()
        received.append(await reader.readline())

    async with tiny_server(handler) as port:
        outcome = await probe(port)
    assert (outcome.admission, outcome.reply, outcome.step) == (
        Admission.ACCEPTED,
        "220-smtp.acme.example ESMTP\n220 ready",
        "",
    )
    assert received == [b"QUIT\r\n"]


@pytest.mark.parametrize(
    ("lines", "admission", "error"),
    [
        ((b"220-x\r\n" * 50,), Admission.GARBLED, "a greeting longer than 50 lines"),
        (
            (b"220 " + b"x" * 2050 + b"\r\n",),
            Admission.GARBLED,
            "a greeting line longer than 2048 bytes",
        ),
        (
            (b"SSH-2.0-OpenSSH_9.6\r\n",),
            Admission.GARBLED,
            "not an SMTP reply line: 'SSH-2.0-OpenSSH_9.6'",
        ),
        ((b"421 4.7.0 Try again later\r\n",), Admission.DEFERRED, ""),
        ((), Admission.NO_GREETING, "no greeting within 0.5 s"),
    ],
)
async def test_probe_bounds_and_classifies_the_greeting(
    lines: tuple[bytes, ...], admission: Admission, error: str
) -> None:
    async with tiny_server(greets(*lines)) as port:
        outcome = await probe(port)
    assert (outcome.admission, outcome.error, outcome.step) == (admission, error, "banner")


async def test_probe_of_a_server_that_hangs_up_at_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return None

    async with tiny_server(handler) as port:
        outcome = await probe(port)
    assert (outcome.admission, outcome.error) == (
        Admission.CLOSED,
        "connection closed without a greeting",
    )


async def test_probe_of_a_port_where_nothing_listens() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = int(placeholder.getsockname()[1])
    outcome = await probe(port)
    assert (outcome.admission, outcome.error, outcome.step) == (
        Admission.REFUSED,
        "connection refused",
        "connect",
    )


# -- reachability over the sandbox ---------------------------------------------------------


def rows(finding: Finding) -> list[tuple[str, str, str, str | None]]:
    return [
        (r["egress_ip"], r["outcome"], r["reply"], r["tls"]) for r in finding.evidence["probes"]
    ]


async def test_healthy_world_greets_every_egress_ip(
    make_world: WorldMaker, healthy: Scenario
) -> None:
    async with make_world(healthy) as world:
        context = world.context(load_config(ACME, environ=world.environ))
        findings = await reachability(context)
        a_queries = [q for q in world.dns.queries if q[:2] == ("smtp.acme.example.", "A")]
    assert summary(findings) == [
        ("allowlist.reachability", "Acme GmbH", Status.PASS, None),
        ("allowlist.reachability", "Acme Retail GmbH", Status.PASS, None),
        ("allowlist.reachability", "Acme Labs GmbH", Status.SKIP, None),
    ]
    assert rows(findings[0]) == [(ip, "accepted", GREETING, None) for ip in EGRESS]
    # Acme Retail GmbH sends on port 465: the greeting arrived over implicit TLS.
    assert rows(findings[1]) == [(ip, "accepted", GREETING, "TLSv1.3") for ip in EGRESS]
    # Each connection's steps, as the one SMTP client recorded them.
    for probe_row in findings[1].evidence["probes"]:
        steps = [(s["step"], s["ok"]) for s in probe_row["steps"]]
        assert steps == [("connect", True), ("tls", True), ("banner", True)]
        assert probe_row["steps"][1]["reply"].startswith("TLSv1.3 ")
    assert [s["step"] for s in findings[0].evidence["probes"][0]["steps"]] == [
        "connect",
        "banner",
    ]
    assert all(r["elapsed_ms"] > 0 for r in findings[0].evidence["probes"])
    assert findings[0].detail == (
        "Connected from 3.121.59.239, 3.65.146.216, 18.158.122.164: each was greeted with "
        f"'{GREETING}'."
    )
    assert findings[0].evidence["snippets"] == {}
    # One question for the host: its two servers (587, 465) ask together, and neither a subject
    # nor an egress IP asks again.
    assert len(a_queries) == 1


async def test_subjects_on_the_same_server_are_probed_once(
    make_world: WorldMaker, healthy: Scenario
) -> None:
    same = ACME_TEXT.replace(
        "      port: 465\n      encryption: tls", "      port: 587\n      encryption: starttls"
    )
    async with make_world(healthy) as world:
        account = parse_config(same, source="acme.yaml", environ=world.environ)
        findings = await reachability(world.context(account))
        a_queries = [q for q in world.dns.queries if q[:2] == ("smtp.acme.example.", "A")]
    assert len(a_queries) == 1
    assert findings[0].evidence["probes"] == findings[1].evidence["probes"]


async def test_the_egress_ip_missing_from_the_servers_allowlist_is_named(
    make_world: WorldMaker,
) -> None:
    async with make_world(load_scenario("egress-ip-missing")) as world:
        findings = await reachability(world.context(load_config(ACME, environ=world.environ)))
    assert summary(findings)[:2] == [
        ("allowlist.reachability", "Acme GmbH", Status.FAIL, Cause.CLIENT_IP_REJECTED),
        ("allowlist.reachability", "Acme Retail GmbH", Status.FAIL, Cause.CLIENT_IP_REJECTED),
    ]
    company = findings[0]
    assert rows(company) == [
        (EGRESS[0], "accepted", GREETING, None),
        (EGRESS[1], "accepted", GREETING, None),
        (EGRESS[2], "rejected", REJECTED, None),
    ]
    assert company.detail == (
        f"Refused: 18.158.122.164: rejected with '{REJECTED}'. Greeted: 3.121.59.239, "
        "3.65.146.216. Personio sends from any of its egress IPs, so 'Test connection' and "
        "candidate mail fail whenever it connects from 18.158.122.164. The allowlist documented "
        "for Acme GmbH lists 18.158.122.164: the account file and the server disagree."
    )
    # No port: one change on the server admits the IP on both ports (the snippets have it).
    assert company.remediation == (
        "Permit 18.158.122.164 on smtp.acme.example in the server's allowlist or firewall, then "
        f"press 'Test connection' in {SETTINGS_PATH} to confirm that Personio gets through. "
        "Ready-to-paste lines are under 'Settings to copy' in the report and in this finding's "
        "evidence ('snippets')."
    )
    assert company.remediation == findings[1].remediation
    # The root cause the reports fold both findings by, and the family the server greeted as.
    assert company.evidence["root_cause"] == findings[1].evidence["root_cause"]
    assert company.evidence["root_cause"] == {
        "kind": "egress_ips_refused",
        "smtp_host": "smtp.acme.example",
        "egress_ips": ("18.158.122.164",),
    }
    assert company.evidence["server_family"] == "postfix"
    assert list(company.evidence["snippets"])[:2] == ["postfix_access", "postfix_mynetworks"]
    assert company.evidence["snippets"]["iptables"] == (
        "# iptables: accept the platform on port 587, ahead of any DROP or REJECT rule\n"
        "iptables -I INPUT -p tcp -s 18.158.122.164 --dport 587 -j ACCEPT"
    )
    assert rows(findings[1])[2] == (EGRESS[2], "rejected", REJECTED, "TLSv1.3")


async def test_a_dropped_egress_ip_times_out_within_the_banner_timeout(
    make_world: WorldMaker, healthy: Scenario
) -> None:
    scenario = with_changes(
        healthy,
        submission={
            "allowlist": ("3.121.59.239/32", "3.65.146.216/32"),
            "allowlist_action": "drop",
        },
    )
    async with make_world(scenario) as world:
        context = world.context(
            load_config(ACME, environ=world.environ), timeouts=Timeouts(banner=0.5)
        )
        started = time.perf_counter()
        findings = await reachability(context)
        elapsed = time.perf_counter() - started
    assert summary(findings)[:2] == [
        ("allowlist.reachability", "Acme GmbH", Status.FAIL, Cause.CONNECTION_TIMEOUT),
        ("allowlist.reachability", "Acme Retail GmbH", Status.FAIL, Cause.CONNECTION_TIMEOUT),
    ]
    dropped = findings[0].evidence["probes"][2]
    assert (dropped["egress_ip"], dropped["outcome"], dropped["step"], dropped["error"]) == (
        "18.158.122.164",
        "no_greeting",
        "banner",
        "no greeting within 0.5 s",
    )
    assert 500 <= dropped["elapsed_ms"] < 1000
    assert elapsed < 1.5
    assert findings[0].title == "smtp.acme.example port 587 refuses 1 of 3 Personio egress IPs"


async def test_a_port_no_server_plays_fails_every_ip_alike(
    make_world: WorldMaker, healthy: Scenario
) -> None:
    async with make_world(healthy) as world:
        account = parse_config(
            ACME_TEXT.replace("port: 587", "port: 2525"), source="acme.yaml", environ=world.environ
        )
        findings = await reachability(world.context(account))
    assert summary(findings)[0] == (
        "allowlist.reachability",
        "Acme GmbH",
        Status.FAIL,
        Cause.CONNECTION_REFUSED,
    )
    assert [r["outcome"] for r in findings[0].evidence["probes"]] == ["refused"] * 3
    assert findings[0].detail == (
        "All 3 egress IPs failed the same way: connection refused. That points at the server "
        "or the settings rather than the allowlist: the host is down, nothing serves port "
        "2525, or a firewall closes it for every client."
    )
    assert findings[0].remediation == (
        "Nothing accepts SMTP connections on smtp.acme.example port 2525: check that the mail "
        f"server runs and listens on that port, and that Host and Port in {SETTINGS_PATH} are "
        "right."
    )


async def test_an_smtp_host_that_does_not_resolve(
    make_world: WorldMaker, healthy: Scenario
) -> None:
    async with make_world(healthy) as world:
        account = parse_config(
            ACME_TEXT.replace("host: smtp.acme.example", "host: smtp.nowhere.acme.example"),
            source="acme.yaml",
            environ=world.environ,
        )
        findings = await reachability(world.context(account))
    assert summary(findings)[:2] == [
        ("allowlist.reachability", "Acme GmbH", Status.FAIL, Cause.DNS_FAILURE),
        ("allowlist.reachability", "Acme Retail GmbH", Status.FAIL, Cause.DNS_FAILURE),
    ]
    assert findings[0].title == "smtp.nowhere.acme.example does not resolve"
    assert "probes" not in findings[0].evidence


async def test_live_mode_cannot_connect_from_the_egress_ips() -> None:
    findings = await reachability(unit_context(config(), mode="live"))
    assert summary(findings) == [
        ("allowlist.reachability", "Acme GmbH", Status.SKIP, None),
        ("allowlist.reachability", "Acme Retail GmbH", Status.SKIP, None),
        ("allowlist.reachability", "Acme Labs GmbH", Status.SKIP, None),
    ]
    assert findings[0].detail == (
        "This run connects from this machine, not from Personio's egress IPs (3.121.59.239, "
        "3.65.146.216, 18.158.122.164), so it cannot see whether smtp.acme.example port 587 "
        "admits them (the sandbox plays them). Verify it by hand: ask the administrator of "
        "the server or its firewall whether 3.121.59.239, 3.65.146.216, 18.158.122.164 may "
        "connect to port 587, or press 'Test connection' in "
        f"{SETTINGS_PATH}: 'Client host rejected' or a timeout there points at the allowlist."
    )


@pytest.mark.parametrize(
    ("scenario", "text", "subject", "error"),
    [
        (
            "expired-certificate",
            ACME_TEXT,
            1,
            "TLS handshake failed: certificate: certificate has expired",
        ),
        (
            "healthy",
            ACME_TEXT.replace(
                "port: 587\n    encryption: starttls", "port: 587\n    encryption: tls"
            ),
            0,
            "TLS handshake failed: WRONG_VERSION_NUMBER",
        ),
    ],
)
async def test_a_tls_failure_leaves_the_allowlist_unseen(
    make_world: WorldMaker, scenario: str, text: str, subject: int, error: str
) -> None:
    async with make_world(load_scenario(scenario)) as world:
        account = parse_config(text, source="acme.yaml", environ=world.environ)
        finding = (await reachability(world.context(account)))[subject]
    assert (finding.status, finding.cause) == (Status.WARN, None)
    assert [(r["outcome"], r["step"], r["error"]) for r in finding.evidence["probes"]] == [
        ("tls_failed", "tls", error)
    ] * 3


async def test_an_internal_address_is_out_of_the_platforms_reach() -> None:
    account = config(ACME_TEXT.replace("host: smtp.acme.example", "host: 10.0.0.25"))
    context = unit_context(
        account,
        mode="sandbox",
        endpoints=Endpoints(strict=True),
        egress_sources={ip: "127.0.0.1" for ip in EGRESS},
    )
    finding = (await reachability(context))[0]
    assert (finding.status, finding.cause) == (Status.FAIL, Cause.CONNECTION_TIMEOUT)
    assert finding.evidence["addresses"] == ("10.0.0.25",)
    assert finding.detail == (
        "All 3 egress IPs failed the same way: 10.0.0.25 is an internal address, out of reach "
        "from the internet. The platform cannot reach the server at all, whatever the "
        "allowlist says."
    )
    assert finding.remediation == (
        f"Host in {SETTINGS_PATH} must name a server the platform can reach from the internet; "
        "dns.smtp_host shows the addresses 10.0.0.25 resolves to."
    )
