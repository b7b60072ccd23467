"""Tests for the check registry and the concurrent runner."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import dns.asyncresolver
import pytest

from diagnostics import registry
from diagnostics.config import AccountConfig, parse_config
from diagnostics.context import Context, Timeouts
from diagnostics.errors import StepTimeout
from diagnostics.findings import Cause, Finding, Status
from diagnostics.registry import CheckSpec, all_checks, check, run_checks, select

ACME = Path(__file__).resolve().parent.parent / "fixtures" / "configs" / "acme.yaml"
COMPANY_PASSWORD = "Acme-Registry-Pw-7731"
ENVIRON = {
    "ACME_SMTP_PASSWORD": COMPANY_PASSWORD,
    "ACME_RETAIL_SMTP_PASSWORD": "Retail-Registry-Pw-4410",
}
CONFIG_CHECKS = ["config.schema", "config.account_matches_address", "config.port_encryption"]


@pytest.fixture
def config() -> AccountConfig:
    return parse_config(ACME.read_text("utf-8"), source=str(ACME), environ=ENVIRON)


def make_context(config: AccountConfig, timeouts: Timeouts) -> Context:
    return Context(
        config=config,
        resolver=dns.asyncresolver.Resolver(configure=False),
        trust=ssl.create_default_context(),
        mode="sandbox",
        timeouts=timeouts,
    )


@pytest.fixture
def scratch_registry() -> Iterator[None]:
    """Lets a test register throw-away checks; removes them afterwards."""
    before = set(all_checks())
    yield
    for check_id in set(registry._REGISTRY) - before:
        del registry._REGISTRY[check_id]
    assert set(registry._REGISTRY) == before


def passing(check_id: str, subject: str = "Acme GmbH", **kwargs: object) -> Finding:
    return Finding(check=check_id, status=Status.PASS, subject=subject, title="ok", **kwargs)  # type: ignore[arg-type]


@pytest.mark.usefixtures("scratch_registry")
async def test_checks_run_concurrently(config: AccountConfig) -> None:
    first_started, second_started = asyncio.Event(), asyncio.Event()

    # Each waits for the other to have started: run one after the other, the first never
    # finishes and ends as a timeout error.
    @check("test.first", flow="outbound", title="Test first")
    async def first(context: Context) -> list[Finding]:
        first_started.set()
        await second_started.wait()
        return [passing("test.first")]

    @check("test.second", flow="outbound", title="Test second")
    async def second(context: Context) -> list[Finding]:
        second_started.set()
        await first_started.wait()
        return [passing("test.second")]

    findings = await run_checks(make_context(config, Timeouts(check=5.0)), select(["test"]))
    assert [(f.check, f.status) for f in findings] == [
        ("test.first", Status.PASS),
        ("test.second", Status.PASS),
    ]


@pytest.mark.usefixtures("scratch_registry")
async def test_exception_becomes_one_redacted_error_finding(config: AccountConfig) -> None:
    assert config.company.smtp is not None
    password = config.company.smtp.password.reveal()
    assert password == COMPANY_PASSWORD

    @check("test.boom", flow="outbound", title="Test boom")
    async def boom(context: Context) -> list[Finding]:
        raise RuntimeError(f"AUTH PLAIN rejected for jobs@acme.example / {password}")

    @check("test.fine", flow="outbound", title="Test fine")
    async def fine(context: Context) -> list[Finding]:
        return [passing("test.fine", detail="fine")]

    findings = await run_checks(make_context(config, Timeouts()), select(["test"]))
    assert len(findings) == 2
    error, ok = findings
    assert error.check == "test.boom"
    assert error.status is Status.ERROR
    assert error.cause is Cause.UNKNOWN
    assert error.subject == "Acme GmbH"
    assert error.title == "Test boom: the check could not run"
    assert error.detail == "RuntimeError: AUTH PLAIN rejected for jobs@acme.example / ********"
    assert error.evidence == {"exception": "RuntimeError"}
    assert password not in str(error.to_dict())
    assert error.duration_ms > 0
    assert (ok.check, ok.status, ok.detail) == ("test.fine", Status.PASS, "fine")


@pytest.mark.usefixtures("scratch_registry")
async def test_timeout_becomes_error_and_others_are_unaffected(config: AccountConfig) -> None:
    @check("test.slow", flow="inbound", title="Test slow")
    async def slow(context: Context) -> list[Finding]:
        await asyncio.sleep(30)
        return [passing("test.slow")]

    @check("test.boom", flow="inbound", title="Test boom")
    async def boom(context: Context) -> list[Finding]:
        raise KeyError("missing")

    @check("test.many", flow="inbound", title="Test many")
    async def many(context: Context) -> list[Finding]:
        return [passing("test.many", "Acme GmbH"), passing("test.many", "Acme Retail GmbH")]

    findings = await run_checks(make_context(config, Timeouts(check=0.2)), select(["test"]))
    assert [(f.check, f.status, f.subject) for f in findings] == [
        ("test.slow", Status.ERROR, "Acme GmbH"),
        ("test.boom", Status.ERROR, "Acme GmbH"),
        ("test.many", Status.PASS, "Acme GmbH"),
        ("test.many", Status.PASS, "Acme Retail GmbH"),
    ]
    slow_finding = findings[0]
    assert slow_finding.cause is Cause.CONNECTION_TIMEOUT
    assert slow_finding.title == "Test slow: did not finish in 0.2 s"
    assert slow_finding.detail == "The check test.slow was stopped after 0.2 seconds."
    assert 200 <= slow_finding.duration_ms < 5000
    assert findings[1].detail == "KeyError: 'missing'"
    assert findings[1].cause is Cause.UNKNOWN


@pytest.mark.usefixtures("scratch_registry")
async def test_step_timeout_escaping_a_check_names_the_step(config: AccountConfig) -> None:
    # A TimeoutError raised inside the check is not the runner's own timeout: the finding
    # must say which step timed out, not claim the check ran for its whole allowance.
    @check("test.step", flow="outbound", title="Test step")
    async def step(context: Context) -> list[Finding]:
        raise StepTimeout("banner", 30.0)

    [finding] = await run_checks(make_context(config, Timeouts(check=120)), select(["test.step"]))
    assert finding.status is Status.ERROR
    assert finding.cause is Cause.CONNECTION_TIMEOUT
    assert finding.title == "Test step: the check could not run"
    assert finding.detail == "StepTimeout: banner: timed out after 30.000 seconds"
    assert finding.duration_ms < 1000


@pytest.mark.usefixtures("scratch_registry")
async def test_durations_are_filled_in(config: AccountConfig) -> None:
    @check("test.timed", flow="sender", title="Test timed")
    async def timed(context: Context) -> list[Finding]:
        await asyncio.sleep(0.02)
        return [passing("test.timed"), passing("test.timed", duration_ms=7.5)]

    first, second = await run_checks(make_context(config, Timeouts()), select(["test.timed"]))
    assert 20 <= first.duration_ms < 5000
    assert second.duration_ms == 7.5


@pytest.mark.usefixtures("scratch_registry")
def test_registering_another_function_under_a_taken_id_fails() -> None:
    async def one(context: Context) -> list[Finding]:
        return []

    async def other(context: Context) -> list[Finding]:
        return []

    check("test.dup", flow="outbound", title="Dup")(one)
    check("test.dup", flow="outbound", title="Dup")(one)  # the same function again: fine
    with pytest.raises(ValueError, match=r"^check test\.dup registered twice$"):
        check("test.dup", flow="outbound", title="Dup")(other)
    assert registry._REGISTRY["test.dup"].function is one


def test_real_config_checks_are_registered_in_spec_order() -> None:
    checks = all_checks()
    config_ids = [i for i in checks if i.startswith("config.")]
    assert config_ids == CONFIG_CHECKS
    spec = checks["config.port_encryption"]
    assert (spec.family, spec.flow, spec.title) == (
        "config",
        "configuration",
        "Port and encryption agree",
    )
    assert not [i for i in checks if i.startswith("test.")]


@pytest.mark.usefixtures("scratch_registry")
def test_select_by_family_id_and_all() -> None:
    async def noop(context: Context) -> list[Finding]:
        return []

    for check_id in ("test.alpha", "test.beta", "zzfam.gamma"):
        check(check_id, flow="outbound", title=check_id)(noop)

    assert [s.id for s in select(["config"])] == CONFIG_CHECKS
    assert [s.id for s in select(["test"])] == ["test.alpha", "test.beta"]
    assert [s.id for s in select([" zzfam.gamma ", "config.schema"])] == [
        "config.schema",
        "zzfam.gamma",
    ]
    assert [s.id for s in select(["test.beta", "test"])] == ["test.alpha", "test.beta"]
    assert [s.id for s in select(None)] == list(all_checks())
    assert [s.id for s in select([])] == list(all_checks())
    assert isinstance(select(["test.alpha"])[0], CheckSpec)


@pytest.mark.usefixtures("scratch_registry")
def test_select_unknown_names_them_and_lists_known() -> None:
    async def noop(context: Context) -> list[Finding]:
        return []

    check("test.alpha", flow="outbound", title="alpha")(noop)
    checks = all_checks()
    families = sorted({s.family for s in checks.values()})
    with pytest.raises(ValueError) as caught:
        select(["config", "nope", "config.schemas", "test.alpha"])
    assert str(caught.value) == (
        "unknown check or family: nope, config.schemas; "
        f"known families: {', '.join(families)}; known checks: {', '.join(checks)}"
    )
    assert "config" in families and "test" in families
    assert "config.schema, config.account_matches_address, config.port_encryption" in str(
        caught.value
    )
