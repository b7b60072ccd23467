"""Every scenario in fixtures/scenarios/ is audited in its own sandbox and must produce exactly
the findings that a healthy world gives its account file (the baseline, derived from the file
in tests/scenario_baseline.py) with the scenario's ``expect`` entries laid over it: check,
subject, status and cause, each duplicate counted.

An entry names what the scenario's fault changes and says why; an entry that restates the
baseline says so ("baseline: ..."). Adding a scenario file adds a test here.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from diagnostics.audit import run_audit
from diagnostics.errors import ConfigError
from diagnostics.registry import all_checks
from diagnostics.sandbox.scenario import SCENARIO_DIR, Expectation, Scenario
from diagnostics.sandbox.scenariofile import load_scenario, scenario_names
from diagnostics.sandbox.world import Sandbox
from tests.scenario_baseline import (
    CHECK_IDS,
    SMTP_SESSION,
    Expected,
    Key,
    baseline,
    baseline_of,
    expected_findings,
    in_report_order,
    report_of,
    restating,
)


def invalid_account(scenario: Scenario) -> bool:
    """The scenario's account file is invalid: it expects the config.schema failures it names
    and nothing else, as there is no healthy baseline for a file the audit cannot load."""
    return any(e.check == "config.schema" and e.status == "fail" for e in scenario.expect)


def baseline_for(scenario: Scenario) -> list[Expected]:
    return [] if invalid_account(scenario) else baseline_of(scenario.config_path())


def differences(actual: Counter[Key], expected: Counter[Key]) -> str:
    def listed(keys: Counter[Key]) -> str:
        return "; ".join(f"{n} x {k}" for k, n in sorted(keys.items(), key=str)) or "none"

    return f"missing: {listed(expected - actual)}\nunexpected: {listed(actual - expected)}"


def test_the_shipped_scenarios_are_found() -> None:
    assert {"healthy", "egress-ip-missing", "account-mismatch", "wrong-encryption"} <= set(
        scenario_names()
    )


def test_the_baseline_has_a_rule_for_every_check_in_report_order() -> None:
    assert list(CHECK_IDS) == list(all_checks())


def test_healthy_expects_the_baseline_and_nothing_of_its_own() -> None:
    # Healthy has no fault: its audit is the derived baseline, which the command-line,
    # notebook and installed-package tests compare whole reports with.
    assert load_scenario("healthy").expect == ()


def test_a_whole_report_in_order_is_the_baseline_with_the_entries_in_place() -> None:
    scenario = load_scenario("demo")
    ordered = report_of(scenario.config_path(), scenario.expect)
    base = baseline_of(scenario.config_path())
    assert [key[:2] for key in ordered] == [b.key[:2] for b in base]
    assert Counter(ordered) == expected_findings(base, scenario.expect, base[0].subject)
    assert ordered[0] == ("config.schema", "Acme GmbH", "pass", None)
    assert ("headers.dkim", "Acme GmbH", "fail", "policy_rejected") in ordered


def test_an_entry_that_adds_a_finding_has_no_place_in_the_report_order() -> None:
    base = baseline(made_up_account())
    extra = Expectation(check="dns.mx", subject="Nobody", status="fail", why="not in the file")
    with pytest.raises(ValueError, match=r"dns\.mx Nobody fail"):
        in_report_order(base, [extra], "Parent")


@pytest.mark.parametrize("name", scenario_names())
def test_each_expectation_says_why_and_differs_from_the_baseline_as_it_says(name: str) -> None:
    scenario = load_scenario(name)
    # Every scenario but healthy has a fault, and names the findings it changes or is about.
    assert scenario.expect or name == "healthy", f"scenario {name} names no finding it is about"
    assert all(e.why for e in scenario.expect)
    if not invalid_account(scenario):
        base = baseline_for(scenario)
        assert restating(base, scenario.expect, base[0].subject) == []


@pytest.mark.parametrize("name", scenario_names())
async def test_scenario_produces_exactly_the_expected_findings(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("ACME_SMTP_PASSWORD", "ACME_RETAIL_SMTP_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    scenario = load_scenario(name)
    async with Sandbox(scenario, state_dir=tmp_path / "state") as world:
        result = await run_audit(scenario.config_path(), sandbox=world)
    assert (result.config_error is not None) == invalid_account(scenario)
    report = result.report
    actual = Counter(
        (f.check, f.subject, f.status.value, f.cause.value if f.cause else None)
        for f in report.findings
    )
    expected = expected_findings(baseline_for(scenario), scenario.expect, report.company)
    assert actual == expected, differences(actual, expected)
    for finding in report.findings:
        if finding.status.value in ("fail", "error", "warn"):
            assert finding.remediation, f"{finding.check} {finding.status.value} has no remediation"


# -- the derivation can fail ------------------------------------------------------------------


def test_an_expectation_without_a_why_is_refused_naming_the_file_and_the_entry(
    tmp_path: Path,
) -> None:
    shutil.copy(SCENARIO_DIR / "healthy.yaml", tmp_path / "healthy.yaml")
    scenario = tmp_path / "wrong-password.yaml"
    scenario.write_text(
        "name: wrong-password\n"
        "summary: AUTH is refused.\n"
        "extends: healthy\n"
        "faults: {login: wrong_password}\n"
        "expect:\n"
        "  - {check: smtp.auth, subject: Acme GmbH, status: fail, cause: auth_failed,\n"
        '     why: "faults.login wrong_password: 535 5.7.8 (RFC 4954 section 6)"}\n'
        "  - {check: smtp.sender, subject: Acme GmbH, status: skip}\n"
        '  - {check: sender.resolution, status: fail, why: "  "}\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_scenario(scenario)
    assert info.value.file == str(scenario)
    assert [p.key for p in info.value.problems] == ["expect[1].why", "expect[2].why"]
    assert "check: smtp.sender, subject: Acme GmbH, status: skip" in str(info.value)
    assert Expectation(check="smtp.auth", status="pass").why is None


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


def test_an_entry_replaces_one_finding_so_duplicates_stay_counted() -> None:
    base = baseline(made_up_account())
    entry = Expectation(
        check="sender.display_name",
        subject="Parent",
        status="fail",
        cause="unknown",
        why="employees[0].name holds a line break",
    )
    expected = expected_findings(base, [entry], "Parent")
    assert expected[("sender.display_name", "Parent", "pass", None)] == 2
    assert expected[("sender.display_name", "Parent", "fail", "unknown")] == 1
    # An audit that reports the baseline unchanged does not meet it.
    assert Counter(b.key for b in base) != expected


def test_an_entry_must_say_when_it_only_restates_the_baseline() -> None:
    base = baseline(made_up_account())
    unchanged = Expectation(check="dns.mx", subject="Parent", status="pass", why="faults.mx absent")
    claimed = Expectation(check="dns.mx", subject="Parent", status="fail", why="baseline: it is")
    said = Expectation(check="dns.mx", subject="Parent", status="pass", why="baseline: own domain")
    assert len(restating(base, [unchanged], "Parent")) == 1
    assert len(restating(base, [claimed], "Parent")) == 1
    assert restating(base, [said], "Parent") == []
