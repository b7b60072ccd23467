"""A name the sandbox does not play is reported as such, never blamed on a DNS provider; in
live mode a REFUSED answer still sends IT to the name's DNS provider."""

from __future__ import annotations

import ssl
from pathlib import Path

from diagnostics.audit import run_audit
from diagnostics.checks.dns.mx import mx_records
from diagnostics.config import load_config
from diagnostics.context import Context
from diagnostics.findings import Cause, Outcome, Status
from diagnostics.net import query_dns
from diagnostics.sandbox.dns import SandboxDNS, ZoneRecord
from diagnostics.sandbox.scenariofile import load_scenario
from diagnostics.sandbox.world import Sandbox
from diagnostics.unplayed import UNPLAYED_DETAIL, refused, unplayed_outcome

NORDLICHT = Path(__file__).resolve().parents[1] / "fixtures" / "accounts" / "nordlicht.yaml"
ENVIRON = {"NORDLICHT_SMTP_PASSWORD": "nordlicht-pw", "FJORD_SMTP_PASSWORD": "fjord-pw"}
ZONES = {"acme.example": [ZoneRecord("@", "MX", "10 mx.acme.example.")]}


def test_unplayed_outcome_names_the_sandbox_not_a_dns_provider() -> None:
    outcome = Outcome(
        Status.ERROR,
        "MX records of example.org could not be looked up",
        "example.org MX: the DNS server refused the query (REFUSED).",
        Cause.DNS_FAILURE,
        "Ask the DNS provider of example.org why its name servers do not answer.",
    )
    said = unplayed_outcome(outcome, ["Example.org.", "example.org"])
    assert said.status is Status.ERROR and said.cause is Cause.DNS_FAILURE
    assert said.title == "The sandbox does not play example.org"
    assert said.remediation.startswith("The sandbox does not play example.org, ")
    assert "DNS provider" not in said.remediation
    assert "--sandbox" in said.remediation
    assert said.detail.startswith(outcome.detail)


def test_refused_is_read_from_resolver_error_texts() -> None:
    assert refused("All nameservers failed to answer the query: answered REFUSED")
    assert not refused("the DNS server failed (SERVFAIL)")


async def test_a_refused_name_is_unplayed_in_the_sandbox_only() -> None:
    async with SandboxDNS(ZONES) as server:
        resolver = server.resolver(timeout=0.5)
        sandbox = await query_dns(resolver, "example.org", "MX", lifetime=0.5, sandbox=True)
        live = await query_dns(resolver, "example.org", "MX", lifetime=0.5)
        played = await query_dns(resolver, "acme.example", "MX", lifetime=0.5, sandbox=True)
    assert (sandbox.kind, sandbox.detail, sandbox.unplayed) == ("servfail", UNPLAYED_DETAIL, True)
    assert sandbox.evidence()["unplayed"] is True
    assert (live.detail, live.unplayed) == ("the DNS server refused the query (REFUSED)", False)
    assert "unplayed" not in live.evidence()
    assert not played.unplayed


async def test_live_mode_still_asks_the_dns_provider() -> None:
    config = load_config(NORDLICHT, environ=ENVIRON)
    async with SandboxDNS(ZONES) as server:
        context = Context(
            config=config,
            resolver=server.resolver(timeout=0.5),
            trust=ssl.create_default_context(),
            mode="live",
        )
        findings = await mx_records(context)
    assert findings[0].status is Status.ERROR
    assert "ask the DNS provider of nordlicht.example.net" in findings[0].remediation


async def test_an_account_the_world_does_not_play_gets_the_sandbox_wording(
    tmp_path: Path,
) -> None:
    # acme's world, not one built from the account: none of its names is played.
    async with Sandbox(load_scenario("healthy"), state_dir=tmp_path, environ=ENVIRON) as world:
        result = await run_audit(NORDLICHT, sandbox=world)
    errors = {
        (f.check, f.subject, f.title) for f in result.report.findings if f.status.value == "error"
    }
    assert errors == {
        (check, subject, f"The sandbox does not play {name}")
        for check, names in {
            "dns.mx": ("nordlicht.example.net", "fjord-spedition.example.org"),
            "dns.spf": ("nordlicht.example.net", "fjord-spedition.example.org"),
            "dns.dmarc": ("_dmarc.nordlicht.example.net", "_dmarc.fjord-spedition.example.org"),
            "redirect.roundtrip": ("nordlicht.example.net", "fjord-spedition.example.org"),
            "dns.smtp_host": ("mail.nordlicht.example.net", "smtp.fjord-spedition.example.org"),
            "smtp.connect": ("mail.nordlicht.example.net", "smtp.fjord-spedition.example.org"),
            "allowlist.reachability": (
                "mail.nordlicht.example.net",
                "smtp.fjord-spedition.example.org",
            ),
        }.items()
        for subject, name in zip(("Nordlicht Logistik AG", "Fjord Spedition GmbH"), names, strict=True)
    }  # fmt: skip
    for finding in result.report.findings:
        assert "DNS provider" not in finding.remediation
