"""Every scenario in fixtures/scenarios/ is audited in its own sandbox and must produce exactly
the findings its ``expect`` names (check, subject, status, and cause where given).

The findings a healthy world gives an account file are derived from the file alone in
tests/scenario_baseline.py; ``healthy`` must expect exactly those. Adding a scenario file adds
a test here.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from diagnostics.audit import run_audit
from diagnostics.registry import all_checks
from diagnostics.sandbox.scenariofile import load_scenario, scenario_names
from diagnostics.sandbox.world import Sandbox
from tests.scenario_baseline import CHECK_IDS, SMTP_SESSION, baseline, baseline_of


def test_the_shipped_scenarios_are_found() -> None:
    assert {"healthy", "egress-ip-missing", "account-mismatch", "wrong-encryption"} <= set(
        scenario_names()
    )


def test_the_baseline_has_a_rule_for_every_check_in_report_order() -> None:
    assert list(CHECK_IDS) == list(all_checks())


def test_healthy_expects_exactly_the_baseline_in_report_order() -> None:
    # The command-line tests compare a healthy report with healthy's list, in order: it must
    # be the derived baseline, not a list of its own.
    scenario = load_scenario("healthy")
    base = baseline_of(scenario.config_path())
    assert [(e.check, e.subject, e.status, e.cause) for e in scenario.expect] == [
        b.key for b in base
    ]


@pytest.mark.parametrize("name", scenario_names())
async def test_scenario_produces_exactly_the_expected_findings(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("ACME_SMTP_PASSWORD", "ACME_RETAIL_SMTP_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    scenario = load_scenario(name)
    assert scenario.expect, f"scenario {name} names no expected findings"
    async with Sandbox(scenario, state_dir=tmp_path / "state") as world:
        result = await run_audit(scenario.config_path(), sandbox=world)
    # A scenario whose account file is invalid expects the config.schema failures it names.
    invalid = any(e.check == "config.schema" and e.status == "fail" for e in scenario.expect)
    assert (result.config_error is not None) == invalid
    report = result.report
    actual = Counter(
        (f.check, f.subject, f.status.value, f.cause.value if f.cause else None)
        for f in report.findings
    )
    expected = Counter(
        (e.check, e.subject or report.company, e.status, e.cause) for e in scenario.expect
    )
    assert actual == expected
    for finding in report.findings:
        if finding.status.value in ("fail", "error", "warn"):
            assert finding.remediation, f"{finding.check} {finding.status.value} has no remediation"


def made_up_account() -> dict[str, Any]:
    """A parent with SMTP settings and an allowlist; Retail with an address but no SMTP."""
    smtp = {"host": "smtp.parent.example", "port": 587, "encryption": "starttls"}
    return {
        "company": {
            "name": "Parent",
            "sender_name": "employee",
            "custom_address": "jobs@parent.example",
            "smtp": {**smtp, "account": "jobs@parent.example"},
            "allowlist": ["3.121.59.239/32"],
        },
        "subcompanies": [{"name": "Retail", "custom_address": "jobs@retail.example"}],
        "positions": [{"title": "Cashier", "subcompany": "Retail"}, {"title": "Accountant"}],
        "employees": [{"name": "Ada"}, {"name": "Grace"}],
    }


def test_the_baseline_of_a_subcompany_without_smtp_skips_its_smtp_checks() -> None:
    base = baseline(made_up_account())
    of_retail = {e.check: e.status for e in base if e.subject == "Retail"}
    without_smtp = (
        "config.account_matches_address",
        "config.port_encryption",
        "dns.smtp_host",
        *SMTP_SESSION,
        "allowlist.coverage",
        "allowlist.reachability",
    )
    assert {check: of_retail[check] for check in without_smtp} == dict.fromkeys(
        without_smtp, "skip"
    )
    # Its own address is still looked up and redirected.
    assert of_retail["dns.mx"] == of_retail["redirect.roundtrip"] == "pass"
    # One resolution per position; one display name per employee (about the parent) and one
    # per (sub)company.
    assert Counter(e.subject for e in base if e.check == "sender.resolution") == {
        "Retail": 1,
        "Parent": 1,
    }
    assert Counter(e.subject for e in base if e.check == "sender.display_name") == {
        "Parent": 3,
        "Retail": 1,
    }
