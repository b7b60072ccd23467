"""Every scenario in fixtures/scenarios/ is audited in its own sandbox and must produce exactly
the findings its ``expect`` names (check, subject, status, and cause where given).

Adding a scenario file adds a test here.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from diagnostics.audit import run_audit
from diagnostics.sandbox.scenariofile import load_scenario, scenario_names
from diagnostics.sandbox.world import Sandbox


def test_the_shipped_scenarios_are_found() -> None:
    assert {"healthy", "egress-ip-missing", "account-mismatch", "wrong-encryption"} <= set(
        scenario_names()
    )


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
