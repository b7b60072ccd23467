"""Tests for the configuration checks: the pure classifiers and the registered checks."""

from __future__ import annotations

import ssl
from pathlib import Path

import dns.asyncresolver
import pytest

from diagnostics.checks.config import (
    account_matches_address,
    classify_account,
    classify_login,
    classify_port_encryption,
    port_encryption,
    schema,
)
from diagnostics.config import AccountConfig, SmtpSettings, parse_config
from diagnostics.context import Context
from diagnostics.findings import Cause, Finding, Status
from diagnostics.model.validate import Rules
from diagnostics.profiles import get_profile
from diagnostics.registry import all_checks, run_checks, select

ACME = Path(__file__).resolve().parents[2] / "fixtures" / "configs" / "acme.yaml"
ACME_TEXT = ACME.read_text(encoding="utf-8")
ENVIRON = {
    "ACME_SMTP_PASSWORD": "Config-Checks-Pw-5521",
    "ACME_RETAIL_SMTP_PASSWORD": "Config-Checks-Retail-Pw-3390",
}
PERSONIO = get_profile("personio")
SETTINGS_PATH = "Settings > Recruiting > Recruiting > General > Recruiting email settings"
SMTP_PATH = f"{SETTINGS_PATH} > Use custom email address? Yes > use for sending emails? Yes"


def smtp(
    port: int = 587, encryption: str = "starttls", account: str = "jobs@acme.example"
) -> SmtpSettings:
    rules = Rules(environ={"PW": "Config-Checks-Unit-Pw-1"})
    settings = {
        "host": "smtp.acme.example",
        "port": port,
        "encryption": encryption,
        "account": account,
        "password": "${PW}",
    }
    return rules.one(rules.smtp_settings(settings, ()))


# port, encryption -> status, cause
COMBINATIONS = [
    (465, "tls", Status.PASS, None),
    (465, "starttls", Status.FAIL, Cause.TLS_MISMATCH),
    (465, "none", Status.WARN, None),
    (587, "starttls", Status.PASS, None),
    (587, "tls", Status.FAIL, Cause.TLS_MISMATCH),
    (587, "none", Status.WARN, None),
    (25, "starttls", Status.WARN, None),
    (25, "tls", Status.FAIL, Cause.TLS_MISMATCH),
    (25, "none", Status.WARN, None),
    (2525, "starttls", Status.WARN, None),
    (2525, "tls", Status.WARN, None),
    (2525, "none", Status.WARN, None),
]


@pytest.mark.parametrize(("port", "encryption", "status", "cause"), COMBINATIONS)
def test_port_encryption_every_combination(
    port: int, encryption: str, status: Status, cause: Cause | None
) -> None:
    outcome = classify_port_encryption(smtp(port, encryption), PERSONIO)
    assert (outcome.status, outcome.cause) == (status, cause)
    label = {"tls": "SSL", "starttls": "TLS/STARTTLS", "none": "None"}[encryption]
    assert outcome.title.startswith(f"Port {port} with Encryption {label}")
    if status is Status.PASS:
        assert outcome.remediation == ""
    else:
        assert outcome.remediation != ""


def test_port_encryption_pass_titles() -> None:
    assert classify_port_encryption(smtp(465, "tls"), PERSONIO).title == (
        "Port 465 with Encryption SSL agree"
    )
    assert classify_port_encryption(smtp(587, "starttls"), PERSONIO).title == (
        "Port 587 with Encryption TLS/STARTTLS agree"
    )


def test_587_with_implicit_tls_is_a_mismatch() -> None:
    outcome = classify_port_encryption(smtp(587, "tls"), PERSONIO)
    assert outcome.status is Status.FAIL
    assert outcome.cause is Cause.TLS_MISMATCH
    assert outcome.title == "Port 587 with Encryption SSL do not match"
    assert outcome.remediation == (
        f"In {SMTP_PATH}, choose Encryption TLS/STARTTLS on port 587, or Port 465 with "
        "Encryption SSL."
    )
    assert "Encryption TLS/STARTTLS" in outcome.remediation
    assert "Port 465" in outcome.remediation
    assert "upgrades with STARTTLS" in outcome.detail


def test_465_with_starttls_is_a_mismatch() -> None:
    outcome = classify_port_encryption(smtp(465, "starttls"), PERSONIO)
    assert outcome.status is Status.FAIL
    assert outcome.cause is Cause.TLS_MISMATCH
    assert outcome.remediation == (
        f"In {SMTP_PATH}, choose Encryption SSL on port 465, or Port 587 with Encryption "
        "TLS/STARTTLS."
    )
    assert "implicit TLS, RFC 8314" in outcome.detail


def test_no_encryption_warns_about_the_password() -> None:
    outcome = classify_port_encryption(smtp(587, "none"), PERSONIO)
    assert outcome.status is Status.WARN
    assert outcome.title == "Port 587 with Encryption None: the password travels unencrypted"
    assert outcome.remediation == (
        f"In {SMTP_PATH}, choose Port 587 with Encryption TLS/STARTTLS, or Port 465 with "
        "Encryption SSL."
    )


def test_port_25_and_nonstandard_ports_warn() -> None:
    port25 = classify_port_encryption(smtp(25, "starttls"), PERSONIO)
    assert port25.title == (
        "Port 25 with Encryption TLS/STARTTLS: port 25 is meant for server-to-server relay"
    )
    other = classify_port_encryption(smtp(2525, "tls"), PERSONIO)
    assert other.title == "Port 2525 with Encryption SSL: a non-standard port"
    assert "port 2525 speaks SSL" in other.remediation


@pytest.mark.parametrize(
    ("account", "custom_address"),
    [
        ("jobs@acme.example", "jobs@acme.example"),
        ("Jobs@ACME.example", "jobs@acme.example"),
        ("jobs@acme.example", "JOBS@acme.example"),
    ],
)
def test_account_equal_to_custom_address_passes(account: str, custom_address: str) -> None:
    outcome = classify_account(custom_address, smtp(account=account), PERSONIO)
    assert outcome.status is Status.PASS
    assert outcome.cause is None
    assert outcome.title == "SMTP account is the custom address"
    assert outcome.remediation == ""


def test_account_differing_from_custom_address_fails() -> None:
    outcome = classify_account(
        "jobs@acme.example", smtp(account="recruiting@acme.example"), PERSONIO
    )
    assert outcome.status is Status.FAIL
    assert outcome.cause is Cause.SENDER_NOT_OWNED
    assert outcome.title == "SMTP account differs from the custom address"
    assert outcome.remediation == (
        f"In {SMTP_PATH}, set Account to jobs@acme.example (the Custom email address) and "
        "enter that mailbox's password. If the mail must come from recruiting@acme.example, "
        "make that the Custom email address instead."
    )
    assert SETTINGS_PATH in outcome.remediation
    assert "SendAsDenied" in outcome.detail


def test_smtp_without_custom_address_fails() -> None:
    outcome = classify_account(None, smtp(account="jobs@acme.example"), PERSONIO)
    assert outcome.status is Status.FAIL
    assert outcome.cause is Cause.SENDER_NOT_OWNED
    assert outcome.title == "SMTP settings without a custom address"
    assert outcome.remediation == (
        f"In {SETTINGS_PATH}, select Yes for 'Use custom email address?' and enter "
        "jobs@acme.example as Custom email address."
    )


def load(text: str = ACME_TEXT) -> AccountConfig:
    return parse_config(text, source="acme.yaml", environ=ENVIRON)


def context(config: AccountConfig) -> Context:
    return Context(
        config=config,
        resolver=dns.asyncresolver.Resolver(configure=False),
        trust=ssl.create_default_context(),
        mode="sandbox",
        config_path=Path("fixtures/configs/acme.yaml"),
    )


def summary(findings: list[Finding]) -> list[tuple[str, str, Status, Cause | None]]:
    return [(f.check, f.subject, f.status, f.cause) for f in findings]


async def test_acme_end_to_end() -> None:
    findings = await run_checks(context(load()), select(["config"]))
    assert summary(findings) == [
        ("config.schema", "Acme GmbH", Status.PASS, None),
        ("config.account_matches_address", "Acme GmbH", Status.PASS, None),
        ("config.account_matches_address", "Acme Retail GmbH", Status.PASS, None),
        ("config.account_matches_address", "Acme Labs GmbH", Status.SKIP, None),
        ("config.port_encryption", "Acme GmbH", Status.PASS, None),
        ("config.port_encryption", "Acme Retail GmbH", Status.PASS, None),
        ("config.port_encryption", "Acme Labs GmbH", Status.SKIP, None),
    ]
    assert all(f.duration_ms > 0 for f in findings)
    by_key = {(f.check, f.subject): f for f in findings}
    retail = by_key[("config.port_encryption", "Acme Retail GmbH")]
    assert retail.evidence == {"host": "smtp.acme.example", "port": 465, "encryption": "tls"}
    assert retail.title == "Port 465 with Encryption SSL agree"
    account = by_key[("config.account_matches_address", "Acme GmbH")]
    assert account.evidence == {
        "account": "jobs@acme.example",
        "custom_address": "jobs@acme.example",
    }
    labs = by_key[("config.port_encryption", "Acme Labs GmbH")]
    assert labs.title == "No SMTP settings of its own"


async def test_schema_finding() -> None:
    [finding] = await schema(context(load()))
    assert finding.status is Status.PASS
    assert finding.subject == "Acme GmbH"
    assert finding.detail == (
        "fixtures/configs/acme.yaml: platform Personio, account acme (inbound address "
        "acme-jobs@m.personio.de), 2 subcompanies, 3 positions, 2 employees; every reference "
        "resolves."
    )
    assert finding.evidence == {
        "file": "fixtures/configs/acme.yaml",
        "inbound_address": "acme-jobs@m.personio.de",
        "subcompanies": ("Acme Retail GmbH", "Acme Labs GmbH"),
    }


BROKEN = (
    ACME_TEXT.replace("    port: 587\n", "    port: 465\n", 1)  # company: 465 with starttls
    .replace("      port: 465\n      encryption: tls\n", "      port: 587\n      encryption: tls\n")
    .replace("      account: jobs@retail.acme.example\n", "      account: hr@retail.acme.example\n")
)


async def test_misconfigured_end_to_end() -> None:
    assert BROKEN.count("port: 465") == 1 and "hr@retail" in BROKEN
    config = load(BROKEN)
    ctx = context(config)
    accounts = await account_matches_address(ctx)
    ports = await port_encryption(ctx)
    assert summary(accounts) == [
        ("config.account_matches_address", "Acme GmbH", Status.PASS, None),
        (
            "config.account_matches_address",
            "Acme Retail GmbH",
            Status.FAIL,
            Cause.SENDER_NOT_OWNED,
        ),
        ("config.account_matches_address", "Acme Labs GmbH", Status.SKIP, None),
    ]
    assert "set Account to jobs@retail.acme.example" in accounts[1].remediation
    assert summary(ports) == [
        ("config.port_encryption", "Acme GmbH", Status.FAIL, Cause.TLS_MISMATCH),
        ("config.port_encryption", "Acme Retail GmbH", Status.FAIL, Cause.TLS_MISMATCH),
        ("config.port_encryption", "Acme Labs GmbH", Status.SKIP, None),
    ]
    assert ports[0].title == "Port 465 with Encryption TLS/STARTTLS do not match"
    assert ports[1].title == "Port 587 with Encryption SSL do not match"


async def test_subcompany_without_smtp_is_skipped_with_reason() -> None:
    findings = await port_encryption(context(load()))
    labs = findings[-1]
    assert labs.to_dict() == {
        "check": "config.port_encryption",
        "status": "skip",
        "subject": "Acme Labs GmbH",
        "title": "No SMTP settings of its own",
        "detail": "Nothing to compare: this (sub)company has no SMTP settings; "
        "sender.resolution shows which route its mail takes.",
        "evidence": {},
        "cause": None,
        "remediation": "",
        "duration_ms": 0.0,
    }


async def test_custom_address_missing_but_smtp_set() -> None:
    text = ACME_TEXT.replace("    custom_address: jobs@retail.acme.example\n", "")
    assert text != ACME_TEXT
    findings = await account_matches_address(context(load(text)))
    assert summary(findings)[1] == (
        "config.account_matches_address",
        "Acme Retail GmbH",
        Status.FAIL,
        Cause.SENDER_NOT_OWNED,
    )
    assert findings[1].title == "SMTP settings without a custom address"
    assert findings[1].evidence == {"account": "jobs@retail.acme.example", "custom_address": None}


def test_config_checks_are_registered() -> None:
    checks = all_checks()
    assert checks["config.account_matches_address"].function is account_matches_address
    assert checks["config.port_encryption"].function is port_encryption
    assert checks["config.schema"].function is schema


# -- a custom address on a special-use domain, a login that is not an address ----------------

STAGING = ACME_TEXT.replace(
    "  custom_address: jobs@acme.example\n", "  custom_address: jobs@acme.test\n", 1
).replace("    account: jobs@acme.example\n", "    account: jobs@acme.test\n", 1)


async def test_a_custom_address_on_a_special_use_domain_loads_and_fails_the_schema_check() -> None:
    assert STAGING.count("acme.test") == 2
    config = load(STAGING)  # not a schema error: the file is well formed
    assert config.company.custom_address == "jobs@acme.test"
    [finding] = await schema(context(config))
    assert (finding.check, finding.status, finding.subject, finding.cause) == (
        "config.schema",
        Status.FAIL,
        "Acme GmbH",
        Cause.DNS_FAILURE,
    )
    assert finding.title == "Custom address jobs@acme.test cannot receive candidates' mail"
    assert "special-use domain .test" in finding.detail
    assert "candidates' mail servers cannot deliver to it" in finding.detail
    assert finding.remediation.startswith(
        f"In {SETTINGS_PATH}, select Yes for 'Use custom email address?' and enter an address "
        "on a domain your company receives internet mail for as Custom email address"
    )
    assert finding.evidence == {"key": "company.custom_address", "custom_address": "jobs@acme.test"}


@pytest.mark.parametrize(
    "address", ["svc@corp.local", "jobs@acme.invalid", "jobs@mail.localhost", "jobs@x.home.arpa"]
)
async def test_every_special_use_domain_is_a_fail_for_the_identity_that_has_it(
    address: str,
) -> None:
    text = ACME_TEXT.replace(
        "    custom_address: jobs@retail.acme.example\n", f"    custom_address: {address}\n"
    )
    assert text != ACME_TEXT
    findings = await schema(context(load(text)))
    assert summary(findings) == [
        ("config.schema", "Acme Retail GmbH", Status.FAIL, Cause.DNS_FAILURE)
    ]
    assert findings[0].evidence["key"] == "subcompanies[0].custom_address"


async def test_a_login_that_is_not_an_address_loads_and_is_the_account_check_s_to_judge() -> None:
    text = ACME_TEXT.replace("    account: jobs@acme.example\n", "    account: CORP\\jobs\n", 1)
    config = load(text)
    assert config.company.smtp is not None and config.company.smtp.account == "CORP\\jobs"
    [company, *_] = await account_matches_address(context(config))
    assert (company.status, company.cause) == (Status.FAIL, Cause.SENDER_NOT_OWNED)
    assert "set Account to jobs@acme.example" in company.remediation


@pytest.mark.parametrize(
    ("login", "custom_address", "title"),
    [
        ("jobs@acme.example", "jobs@acme.example", None),
        ("Jobs@Acme.Example", "jobs@acme.example", None),
        ("CORP\\jobs", None, "Login CORP\\jobs is not an e-mail address"),
        ("svc", "jobs@acme.example", "Login svc is not the custom address jobs@acme.example"),
    ],
)
def test_a_login_other_than_the_custom_address_warns(
    login: str, custom_address: str | None, title: str | None
) -> None:
    outcome = classify_login(login, custom_address, PERSONIO)
    if title is None:
        assert outcome is None
        return
    assert outcome is not None
    assert (outcome.status, outcome.title) == (Status.WARN, title)
    assert SMTP_PATH in outcome.remediation
