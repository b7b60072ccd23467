"""The sandbox plays a user's own account file: the world is built from the account (domains,
SMTP hosts, ports, logins, redirections, allowlist) and the scenario adds only its faults.

fixtures/accounts/nordlicht.yaml is not acme's: other domains and TLDs, a parent on its own
server (587, STARTTLS), a subcompany on a different server (465, implicit TLS) and one without
settings of its own. Every shipped scenario is audited on it here, so that adding a scenario
file adds a case (and needs its entry in ``CHANGES`` or ``IN_ACCOUNT_FILE``).
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest

from diagnostics.audit import run_audit
from diagnostics.cli import main
from diagnostics.config import load_config
from diagnostics.errors import ConfigError
from diagnostics.notebook import run_notebook_audit
from diagnostics.sandbox.account import account_world, load_account_world, sandbox_for
from diagnostics.sandbox.scenario import Scenario
from diagnostics.sandbox.scenariofile import load_scenario, scenario_names
from diagnostics.secrets import known_values
from tests.sandbox.test_faults import records

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
NORDLICHT = FIXTURES / "accounts" / "nordlicht.yaml"
ENVIRON = {"NORDLICHT_SMTP_PASSWORD": "nordlicht-pw", "FJORD_SMTP_PASSWORD": "fjord-pw"}
N, F, P = "Nordlicht Logistik AG", "Fjord Spedition GmbH", "Polar Service GmbH"

CHECKS = (
    "config.account_matches_address",
    "config.port_encryption",
    "dns.mx",
    "dns.smtp_host",
    "dns.spf",
    "dns.dmarc",
    "smtp.connect",
    "smtp.tls",
    "smtp.auth",
    "smtp.sender",
    "smtp.provider",
    "smtp.settings_probe",
    "allowlist.coverage",
    "allowlist.reachability",
    "redirect.roundtrip",
    "redirect.local_copy",
    "redirect.loop",
    "headers.retention",
    "headers.forwarding_style",
    "headers.dkim",
    "sender.resolution",
    "sender.display_name",
)

Key = tuple[str, str]
Result = tuple[str, str | None]


def healthy_findings() -> dict[Key, Result]:
    """The audit of nordlicht.yaml in the healthy world: (check, subject) -> (status, cause).

    Polar Service has neither address nor settings of its own: every check of those skips it,
    and its positions send as the parent. Fjord documents no allowlist.
    """
    found: dict[Key, Result] = {("config.schema", N): ("pass", None)}
    for check in CHECKS:
        for subject in (N, F, P):
            status = "pass" if subject != P or check.startswith("sender.") else "skip"
            found[(check, subject)] = (status, None)
    found[("allowlist.coverage", F)] = ("skip", None)
    return found


def _same(status: str, cause: str | None, *keys: Key) -> dict[Key, Result]:
    return dict.fromkeys(keys, (status, cause))


SKIP: Result = ("skip", None)
WARN: Result = ("warn", None)
# What the server behind each SMTP host does to the session checks, per fault.
_CERTIFICATE = {
    **_same("fail", "tls_certificate", ("smtp.tls", N), ("smtp.tls", F)),
    **_same("skip", None, ("smtp.auth", N), ("smtp.auth", F)),
    **_same("skip", None, ("smtp.sender", N), ("smtp.sender", F)),
    # 465 cannot be probed without a TLS handshake the certificate already fails.
    ("allowlist.reachability", F): WARN,
    **_same("fail", "tls_certificate", *(("sender.resolution", s) for s in (N, F, P))),
}
_ALTERED_ARRIVAL = {
    **_same("fail", "unknown", ("headers.retention", N), ("headers.retention", F)),
    **_same("warn", None, ("headers.forwarding_style", N), ("headers.forwarding_style", F)),
    **_same("fail", "policy_rejected", ("headers.dkim", N), ("headers.dkim", F)),
}
_NOT_REDIRECTED = {
    **_ALTERED_ARRIVAL,
    **_same("fail", "unknown", ("headers.forwarding_style", N), ("headers.forwarding_style", F)),
}
_EGRESS_REFUSED = _same(
    "fail", "client_ip_rejected", ("allowlist.reachability", N), ("allowlist.reachability", F)
)


def _no_session(cause: str, *, reachability: bool) -> dict[Key, Result]:
    changes = {
        **_same("fail", cause, ("smtp.connect", N), ("smtp.connect", F)),
        ("smtp.tls", N): SKIP,
        **_same("skip", None, ("smtp.auth", N), ("smtp.auth", F)),
        **_same("skip", None, ("smtp.sender", N), ("smtp.sender", F)),
        **_same("fail", cause, ("smtp.settings_probe", N), ("smtp.settings_probe", F)),
        **_same("fail", cause, *(("sender.resolution", s) for s in (N, F, P))),
    }
    if reachability:
        changes.update(
            _same("fail", cause, ("allowlist.reachability", N), ("allowlist.reachability", F))
        )
    return changes


def _no_arrival(subject: str) -> dict[Key, Result]:
    return dict.fromkeys(
        (("headers.retention", subject), ("headers.forwarding_style", subject), ("headers.dkim", subject)),
        SKIP,
    )  # fmt: skip


# Scenario -> what differs from the healthy audit of nordlicht.yaml. Faults stated by role hit
# the parent company (its domain, SMTP host, login, redirection); server behaviour hits both
# SMTP hosts, as it hits acme's one host shared by parent and subcompany.
CHANGES: dict[str, dict[Key, Result]] = {
    "healthy": {},
    "markup-banner": {},
    "egress-ip-missing": _EGRESS_REFUSED,
    "subject-tagged": _ALTERED_ARRIVAL,
    "footer-appended": _ALTERED_ARRIVAL,
    "demo": {**_EGRESS_REFUSED, **_ALTERED_ARRIVAL},
    "forward-as-attachment": _NOT_REDIRECTED,
    "forward-inline": _NOT_REDIRECTED,
    "from-rewritten": _NOT_REDIRECTED,
    "headers-stripped": _NOT_REDIRECTED,
    "expired-certificate": _CERTIFICATE,
    "self-signed-certificate": _CERTIFICATE,
    "wrong-host-certificate": _CERTIFICATE,
    "no-local-copy": _same("warn", None, ("redirect.local_copy", N), ("redirect.local_copy", F)),
    "slow-delivery": _same("warn", None, ("redirect.roundtrip", N), ("redirect.roundtrip", F)),
    "no-redirect": {
        **_same("fail", "forwarding_blocked", ("redirect.roundtrip", N), ("redirect.roundtrip", F)),
        **_no_arrival(N),
        **_no_arrival(F),
    },
    "mistyped-platform-address": {
        ("redirect.roundtrip", N): ("fail", "recipient_unknown"),
        **_no_arrival(N),
    },
    "mail-loop": {
        **_same("fail", "loop_detected", ("redirect.roundtrip", N), ("redirect.loop", N)),
        **_no_arrival(N),
    },
    "no-mx": {
        **_same("fail", "dns_failure", ("dns.mx", N), ("redirect.roundtrip", N)),
        **_same("skip", None, ("redirect.local_copy", N), ("redirect.loop", N)),
        **_no_arrival(N),
    },
    "spf-too-many-lookups": {("dns.spf", N): ("fail", "policy_rejected")},
    "dmarc-reject": {("dns.dmarc", N): WARN},
    "bad-password": {
        ("smtp.auth", N): ("fail", "auth_failed"),
        ("smtp.sender", N): SKIP,
        **_same("fail", "auth_failed", ("sender.resolution", N), ("sender.resolution", P)),
    },
    # Only the parent's host is private: Fjord's own server is untouched.
    "smtp-host-private": {
        **_same(
            "fail",
            "connection_timeout",
            *(
                (check, N)
                for check in (
                    "dns.smtp_host",
                    "smtp.connect",
                    "smtp.settings_probe",
                    "allowlist.reachability",
                    "sender.resolution",
                )
            ),
            ("sender.resolution", P),
        ),
        **_same("skip", None, ("smtp.tls", N), ("smtp.auth", N), ("smtp.sender", N)),
    },
    # Port 465 speaks TLS from the first byte: only the parent's STARTTLS port is affected.
    "starttls-not-offered": {
        **_same("fail", "tls_mismatch", ("smtp.tls", N), ("smtp.settings_probe", N)),
        **_same("skip", None, ("smtp.auth", N), ("smtp.sender", N)),
        **_same("fail", "tls_mismatch", ("sender.resolution", N), ("sender.resolution", P)),
    },
    # Greeted, then cut off at EHLO without a 421: the server is not serving, nothing refused.
    "closes-after-banner": _no_session("temporary_failure", reachability=False),
    "no-banner": _no_session("connection_timeout", reachability=True),
}

# Scenarios whose fault is in their own account file: played with nordlicht.yaml they are
# refused, naming the key of the user's file to change instead.
IN_ACCOUNT_FILE = {
    "account-mismatch": "company.smtp.account",
    "wrong-encryption": "company.smtp.encryption",
    "starttls-on-implicit-port": "company.smtp.encryption",
    "sender-international-names": "employees[].name",
    "sender-name-with-newline": "employees[].name",
    "sender-parent-only": "subcompanies",
    "sender-subcompany-account-mismatch": "subcompanies[].smtp.account",
    "sender-subcompany-without-smtp": "subcompanies[].smtp",
    "sender-three-subcompanies": "subcompanies",
    "sender-unknown-subcompany": "positions[].subcompany",
}


def nordlicht_world(name: str = "healthy") -> Scenario:
    config = load_config(NORDLICHT, environ=ENVIRON)
    return account_world(load_scenario(name), config, config_path=NORDLICHT)


# -- the world, built without a socket ------------------------------------------------------


def test_every_scenario_has_its_case_here() -> None:
    assert sorted([*CHANGES, *IN_ACCOUNT_FILE]) == scenario_names()


def test_the_world_plays_every_domain_and_host_of_the_account() -> None:
    world = nordlicht_world()
    assert records(world, "nordlicht.example.net", "MX") == ["10 mx.nordlicht.example.net."]
    assert records(world, "fjord-spedition.example.org", "MX") == ["10 mx.nordlicht.example.net."]
    assert records(world, "nordlicht.example.net", "TXT") == [
        '"v=spf1 mx a:mail.nordlicht.example.net -all"'
    ]
    assert records(world, "_dmarc.fjord-spedition.example.org", "TXT") == [
        '"v=DMARC1; p=quarantine; rua=mailto:dmarc@fjord-spedition.example.org"'
    ]
    assert records(world, "mx.nordlicht.example.net", "A") == ["198.51.100.10"]
    assert records(world, "mail.nordlicht.example.net", "A") == ["198.51.100.20"]
    assert records(world, "smtp.fjord-spedition.example.org", "A") == ["198.51.100.21"]
    assert records(world, "21.100.51.198.in-addr.arpa", "PTR") == [
        "smtp.fjord-spedition.example.org."
    ]
    assert records(world, "m.personio.de", "MX") == ["10 inbound.m.personio.de."]
    # Nothing of acme's is left in it.
    assert not [zone for zone in world.dns if "acme" in zone]


def test_each_smtp_host_is_its_own_server_with_its_own_login() -> None:
    world = nordlicht_world()
    assert [(s.hostname, s.address) for s in world.submissions] == [
        ("mail.nordlicht.example.net", "198.51.100.20"),
        ("smtp.fjord-spedition.example.org", "198.51.100.21"),
    ]
    assert [[(u.account, u.password) for u in s.users] for s in world.submissions] == [
        [("karriere@nordlicht.example.net", "${NORDLICHT_SMTP_PASSWORD}")],
        [("jobs@fjord-spedition.example.org", "${FJORD_SMTP_PASSWORD}")],
    ]
    # A real server's ports: STARTTLS on 587 and 25, implicit TLS on 465.
    assert {(s.ports.starttls, s.ports.tls) for s in world.submissions} == {((587, 25), (465,))}
    assert {s.allowlist for s in world.submissions} == {
        ("3.121.59.239/32", "3.65.146.216/32", "18.158.122.164/32")
    }


def test_mail_to_each_custom_address_is_redirected_to_the_accounts_inbound_address() -> None:
    world = nordlicht_world()
    assert world.company_mx.mailboxes == (
        "karriere@nordlicht.example.net",
        "jobs@fjord-spedition.example.org",
    )
    assert set(world.company_mx.redirects.values()) == {"nordlicht-jobs@m.personio.de"}
    assert list(world.platform.accounts) == ["nordlicht"]
    assert world.expect == ()
    assert world.config_path() == NORDLICHT


def test_the_scenario_gives_its_server_behaviour_and_missing_egress_ip() -> None:
    world = nordlicht_world("egress-ip-missing")
    assert {s.allowlist for s in world.submissions} == {("3.121.59.239/32", "3.65.146.216/32")}
    assert {s.certificate for s in nordlicht_world("expired-certificate").submissions} == {
        "expired"
    }
    assert nordlicht_world("subject-tagged").company_mx.faults.subject_tag == "[EXTERNAL]"


def test_a_port_outside_the_standard_ones_is_served_as_the_account_says(tmp_path: Path) -> None:
    text = NORDLICHT.read_text(encoding="utf-8").replace("port: 465", "port: 2465")
    moved = tmp_path / "moved.yaml"
    moved.write_text(text, encoding="utf-8")
    config = load_config(moved, environ=ENVIRON)
    world = account_world(load_scenario("healthy"), config, config_path=moved)
    assert world.other_submissions[0].ports.tls == (465, 2465)
    assert world.submission.ports.tls == (465,)


def test_a_password_file_is_what_the_server_holds(tmp_path: Path) -> None:
    (tmp_path / "fjord.pw").write_text("from-a-file\n", encoding="utf-8")
    text = NORDLICHT.read_text(encoding="utf-8").replace(
        "password: ${FJORD_SMTP_PASSWORD}", "password_file: fjord.pw"
    )
    (tmp_path / "account.yaml").write_text(text, encoding="utf-8")
    world = load_account_world("healthy", tmp_path / "account.yaml", environ=ENVIRON)
    (user,) = world.other_submissions[0].users
    assert (user.password, user.password_file) == ("", str(tmp_path / "fjord.pw"))


def test_the_scenarios_own_account_file_gets_exactly_its_own_world() -> None:
    for name in ("healthy", "no-mx", "wrong-encryption"):
        scenario = load_scenario(name)
        assert load_account_world(name, scenario.config_path()) == scenario
        assert load_account_world(name, None) == scenario


def test_an_invalid_account_file_is_left_to_the_audit_to_report(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("platform: {profile: personio}\n", encoding="utf-8")
    assert load_account_world("healthy", broken) == load_scenario("healthy")


@pytest.mark.parametrize("name", sorted(IN_ACCOUNT_FILE))
def test_a_scenario_whose_fault_is_in_its_account_file_is_refused(name: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_account_world(name, NORDLICHT, environ=ENVIRON)
    message = str(error.value)
    scenario = load_scenario(name)
    assert name in message and scenario.config in message
    assert IN_ACCOUNT_FILE[name] in message
    assert "nordlicht.yaml" in message and "--sandbox healthy" in message


# -- audits of nordlicht.yaml, one sandbox per scenario -------------------------------------


@pytest.mark.parametrize("name", sorted(CHANGES))
async def test_the_account_fails_exactly_where_the_scenario_says(name: str, tmp_path: Path) -> None:
    # No password in the environment: the sandbox generates the ones the file refers to.
    async with sandbox_for(name, NORDLICHT, state_dir=tmp_path / "state", environ={}) as world:
        result = await run_audit(NORDLICHT, sandbox=world)
    report = result.report
    actual = Counter(
        (f.check, f.subject, f.status.value, f.cause.value if f.cause else None)
        for f in report.findings
    )
    expected = Counter(
        (check, subject, status, cause)
        for (check, subject), (status, cause) in {**healthy_findings(), **CHANGES[name]}.items()
    )
    assert actual == expected
    assert (report.verdict.value == "pass") == (name in ("healthy", "markup-banner"))
    for finding in report.findings:
        assert "acme" not in f"{finding.title} {finding.detail} {finding.remediation}".lower()
        assert "DNS provider" not in finding.remediation


async def test_the_world_serves_each_smtp_host_and_generates_the_missing_passwords(
    tmp_path: Path,
) -> None:
    async with sandbox_for("healthy", NORDLICHT, state_dir=tmp_path / "s", environ={}) as world:
        described = world.describe()
        hosts = sorted(world.submissions)
    assert hosts == ["mail.nordlicht.example.net", "smtp.fjord-spedition.example.org"]
    served = {(s["hostname"], s["world"]) for s in described["servers"]}
    assert ("smtp.fjord-spedition.example.org", "198.51.100.21:465") in served
    assert ("mail.nordlicht.example.net", "198.51.100.20:587") in served
    assert described["secrets_generated"] == ["FJORD_SMTP_PASSWORD", "NORDLICHT_SMTP_PASSWORD"]


# -- the commands that start a sandbox build it from the audited account ---------------------


def test_cli_audit_of_the_account_in_the_healthy_sandbox_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ENVIRON:
        monkeypatch.delenv(name, raising=False)
    account = tmp_path / "my-company.yaml"
    account.write_text(NORDLICHT.read_text(encoding="utf-8"), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["audit", "my-company.yaml", "--sandbox", "healthy", "--report-dir", "out"],
        out=out,
        err=err,
    )
    assert (code, err.getvalue()) == (0, "")
    assert out.getvalue().startswith("verdict: pass")
    for secret in known_values():
        assert secret not in out.getvalue()


def test_cli_audit_with_a_scenario_of_another_account_file_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    code = main(["audit", str(NORDLICHT), "--sandbox", "wrong-encryption"], out=out, err=err)
    assert code == 2
    assert "wrong-encryption" in err.getvalue()
    assert "company.smtp.encryption" in err.getvalue()


async def test_notebook_audit_of_the_account_in_a_fault_scenario(tmp_path: Path) -> None:
    audit = await run_notebook_audit(
        config=str(NORDLICHT),
        sandbox="spf-too-many-lookups",
        report_dir=str(tmp_path / "report"),
        fail_on="never",
    )
    failing = {
        (f.check, f.subject, f.status.value)
        for f in audit.result.report.findings
        if f.status.value in ("fail", "error")
    }
    assert failing == {("dns.spf", N, "fail")}


def test_every_scenario_of_its_own_account_file_names_the_key_to_change() -> None:
    for name in scenario_names():
        scenario = load_scenario(name)
        assert bool(scenario.account_fault) == scenario.fault_in_account, name


def test_sandbox_up_plays_the_given_account_file(tmp_path: Path) -> None:
    from tests.test_sandbox_up import read_exports, sandbox_up

    options = ("--config", str(NORDLICHT), "--state", str(tmp_path / "state"))
    with sandbox_up(*options, cwd=tmp_path) as (described, _):
        hosts = {(s["role"], s["hostname"], s["world"]) for s in described["servers"]}
        passwords = read_exports(Path(described["credentials_file"]))
    assert ("submission (STARTTLS)", "mail.nordlicht.example.net", "198.51.100.20:587") in hosts
    assert (
        "submission (implicit TLS)",
        "smtp.fjord-spedition.example.org",
        "198.51.100.21:465",
    ) in hosts
    assert sorted(passwords) == ["FJORD_SMTP_PASSWORD", "NORDLICHT_SMTP_PASSWORD"]
    assert described["inbound_addresses"] == {"nordlicht": "nordlicht-jobs@m.personio.de"}


def test_batch_refuses_a_scenario_it_cannot_play_before_any_kernel_starts(
    tmp_path: Path,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["batch", str(NORDLICHT), "--sandbox", "account-mismatch", "--report-dir", str(tmp_path)],
        out=out,
        err=err,
    )
    assert code == 2
    assert "company.smtp.account" in err.getvalue()


def test_a_subcompany_without_smtp_still_gets_its_domain_and_redirection(tmp_path: Path) -> None:
    account = tmp_path / "small.yaml"
    account.write_text(
        "platform: {profile: personio, account: kleinbetrieb}\n"
        "company:\n"
        "  name: Kleinbetrieb KG\n"
        "  custom_address: jobs@kleinbetrieb.example.com\n"
        "  smtp: {host: mx.kleinbetrieb.example.com, port: 587, encryption: starttls,\n"
        "         account: jobs@kleinbetrieb.example.com, password: '${KLEIN_PW}'}\n"
        "subcompanies:\n"
        "  - {name: Ableger GmbH, custom_address: bewerbung@ableger.example.org}\n",
        encoding="utf-8",
    )
    world = load_account_world("healthy", account, environ={})
    # The SMTP host has the name the MX would have had: the MX takes another.
    assert world.company_mx.hostname == "inbound-mx.kleinbetrieb.example.com"
    assert records(world, "kleinbetrieb.example.com", "MX") == [
        "10 inbound-mx.kleinbetrieb.example.com."
    ]
    assert records(world, "mx.kleinbetrieb.example.com", "A") == ["198.51.100.20"]
    assert records(world, "ableger.example.org", "TXT") == ['"v=spf1 mx -all"']
    assert world.company_mx.redirects["bewerbung@ableger.example.org"] == (
        "kleinbetrieb-jobs@m.personio.de"
    )
    assert [u.account for s in world.submissions for u in s.users] == [
        "jobs@kleinbetrieb.example.com"
    ]


async def test_a_password_file_logs_in_to_the_sandbox(tmp_path: Path) -> None:
    (tmp_path / "fjord.pw").write_text("Fjord-File-Pw-2231\n", encoding="utf-8")
    text = NORDLICHT.read_text(encoding="utf-8").replace(
        "password: ${FJORD_SMTP_PASSWORD}", "password_file: fjord.pw"
    )
    account = tmp_path / "account.yaml"
    account.write_text(text, encoding="utf-8")
    async with sandbox_for("healthy", account, state_dir=tmp_path / "s", environ={}) as world:
        result = await run_audit(account, sandbox=world, only=["smtp.auth"])
    assert [(f.subject, f.status.value) for f in result.report.findings] == [
        (N, "pass"),
        (F, "pass"),
        (P, "skip"),
    ]


async def test_a_login_that_is_not_an_address_logs_in_to_the_sandbox(tmp_path: Path) -> None:
    text = NORDLICHT.read_text(encoding="utf-8").replace(
        "      account: jobs@fjord-spedition.example.org", "      account: FJORD\\jobs"
    )
    account = tmp_path / "account.yaml"
    account.write_text(text, encoding="utf-8")
    fjord = load_config(account, environ=ENVIRON).subcompany(F).smtp
    assert fjord is not None and fjord.account == "FJORD\\jobs"
    async with sandbox_for("healthy", account, state_dir=tmp_path / "s", environ=ENVIRON) as world:
        result = await run_audit(
            account, sandbox=world, only=["smtp.auth", "config.account_matches_address"]
        )
    found = {(f.check, f.subject): (f.status.value, f.cause) for f in result.report.findings}
    # The server takes the login it holds; the platform would log in as the custom address.
    assert found[("smtp.auth", F)] == ("pass", None)
    assert found[("config.account_matches_address", F)][0] == "fail"
    assert found[("smtp.auth", N)] == ("pass", None)
